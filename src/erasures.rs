//! `movies erasures list | reapply FILE`: the erasure list that outlives
//! backups (see README, "Backups and erasures").

use std::path::Path;

use auth_service::domain::UserId;

use crate::{BoxError, Config};

/// Why a list cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: line {line} is not a user id: {text:?}")]
pub struct BadList {
    path: String,
    line: usize,
    text: String,
}

/// auth-service on the configured store, on no public port.
async fn auth(config: &Config) -> Result<auth_service::Application, BoxError> {
    let mut config = config.auth.clone();
    config.auth_listen = "127.0.0.1:0".parse()?;
    config.auth_metrics_listen = platform::MaybeAddr::OFF;
    Ok(auth_service::Application::build(&config).await?)
}

/// Prints every erased user's id, one per line, oldest first.
pub async fn list(config: &Config) -> Result<(), BoxError> {
    let auth = auth(config).await?;
    for id in auth.erasures() {
        println!("{id}");
    }
    auth.close().await;
    Ok(())
}

/// The ids in `text` (one per line; blank lines and `#` comments skipped).
pub fn parse(path: &Path, text: &str) -> Result<Vec<UserId>, BadList> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(i, line)| {
            line.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .map(UserId)
                .ok_or_else(|| BadList {
                    path: path.display().to_string(),
                    line: i + 1,
                    text: line.chars().take(40).collect(),
                })
        })
        .collect()
}

/// Erases again every user of the list in `file` the store still holds.
pub async fn reapply(config: &Config, file: &Path) -> Result<(), BoxError> {
    let ids = parse(file, &std::fs::read_to_string(file)?)?;
    let auth = auth(config).await?;
    let erased = auth.reapply_erasures(&ids).await;
    auth.close().await;
    let erased = erased?;
    println!(
        "{} of {} listed users erased again (the others were not in this store, or erased already)",
        erased.len(),
        ids.len()
    );
    for id in erased {
        println!("{id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_ids_one_per_line_and_anything_else_is_refused() {
        let path = Path::new("erased.txt");
        let ids = parse(path, "# erased\n3\n\n 17 \n").unwrap();
        assert_eq!(ids, [UserId(3), UserId(17)]);
        let bad = parse(path, "3\nzoë\n").unwrap_err();
        assert_eq!(
            bad.to_string(),
            "erased.txt: line 2 is not a user id: \"zoë\""
        );
        assert!(parse(path, "0\n").is_err());
        assert!(parse(path, "-4\n").is_err());
    }
}
