//! DRF's `LimitOffsetPagination`: `?limit=L&offset=O` turns a list into
//! `{"count", "next", "previous", "results"}`.

use serde::Serialize;
use utoipa::ToSchema;

/// `?limit&offset`, as the OpenAPI document declares them on every list
/// (`params(Page)`); [`ListQuery`] reads them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "declares the parameters; never built")]
pub struct Page {
    /// Page size: turns the list into a page.
    limit: Option<u32>,
    /// Rows to skip (with limit).
    offset: Option<u32>,
}

/// The query of a list request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Every query parameter, in order.
    pub params: Vec<(String, String)>,
    /// The page size; `None` (absent or not a positive integer) means no pagination.
    pub limit: Option<u32>,
    /// Rows to skip (0 when absent or invalid).
    pub offset: u32,
}

impl ListQuery {
    /// Parses a raw query string as DRF does: a `limit` that is not a positive
    /// integer means no pagination, an invalid `offset` means 0.
    pub fn parse(raw: Option<&str>) -> Self {
        let params: Vec<(String, String)> =
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let get = |k: &str| {
            params
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim())
        };
        let limit = get("limit")
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&l| l > 0);
        let offset = get("offset")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        Self {
            params,
            limit,
            offset,
        }
    }

    /// A query parameter's last value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `next` and `previous` links of a page, absolute like DRF's.
    pub fn links(&self, base: &str, count: u64) -> (Option<String>, Option<String>) {
        let Some(limit) = self.limit else {
            return (None, None);
        };
        let (limit, offset) = (u64::from(limit), u64::from(self.offset));
        let next = (offset + limit < count).then(|| self.url(base, limit, Some(offset + limit)));
        let previous = (offset > 0).then(|| {
            if offset <= limit {
                self.url(base, limit, None)
            } else {
                self.url(base, limit, Some(offset - limit))
            }
        });
        (next, previous)
    }

    /// The page of `results` out of `count` rows, linked like DRF's from `base`.
    pub fn page<R>(&self, base: &str, count: u64, results: R) -> Paginated<R> {
        let (next, previous) = self.links(base, count);
        Paginated {
            count,
            next,
            previous,
            results,
        }
    }

    /// `base` with this query and `cursor` in place of any cursor or
    /// offset, keys sorted (as DRF's cursor links).
    pub fn cursor_url(&self, base: &str, cursor: &str) -> String {
        let mut params: Vec<(String, String)> = self
            .params
            .iter()
            .filter(|(k, _)| k != "cursor" && k != "offset")
            .cloned()
            .collect();
        params.push(("cursor".into(), cursor.into()));
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        format!("{base}?{query}")
    }

    /// `base` with this query, `limit` and `offset` replaced, keys sorted (as
    /// DRF's `replace_query_param`).
    fn url(&self, base: &str, limit: u64, offset: Option<u64>) -> String {
        let mut params: Vec<(String, String)> = self
            .params
            .iter()
            .filter(|(k, _)| k != "limit" && k != "offset")
            .cloned()
            .collect();
        params.push(("limit".into(), limit.to_string()));
        if let Some(o) = offset {
            params.push(("offset".into(), o.to_string()));
        }
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        format!("{base}?{query}")
    }
}

/// A page of results.
// `R`, the rows, is typed (`Vec<T>`) or already JSON (`&RawValue`, written
// without touching the rows): the body is the same.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paginated<R> {
    /// How many rows the whole list has.
    pub count: u64,
    /// The next page, if any.
    pub next: Option<String>,
    /// The previous page, if any.
    pub previous: Option<String>,
    /// The rows of this page.
    pub results: R,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_page_is_the_same_body_as_a_page() {
        let rows = vec![(1, "a\"é"), (2, "b")];
        let raw = serde_json::value::to_raw_value(&rows).unwrap();
        for (next, previous) in [
            (None, None),
            (Some("http://h/n?a=1".to_owned()), Some("p".to_owned())),
        ] {
            let page = Paginated {
                count: 7,
                next: next.clone(),
                previous: previous.clone(),
                results: rows.clone(),
            };
            let raw_page = Paginated {
                count: 7,
                next,
                previous,
                results: &*raw,
            };
            assert_eq!(
                serde_json::to_string(&raw_page).unwrap(),
                serde_json::to_string(&page).unwrap()
            );
        }
    }

    #[test]
    fn no_positive_limit_means_no_pagination() {
        for q in [
            None,
            Some("offset=3"),
            Some("limit=0"),
            Some("limit=-1"),
            Some("limit=x"),
        ] {
            assert_eq!(ListQuery::parse(q).limit, None, "{q:?}");
        }
        let q = ListQuery::parse(Some("limit=2&offset=oops"));
        assert_eq!((q.limit, q.offset), (Some(2), 0));
    }

    #[test]
    fn links_follow_drf() {
        let base = "http://h/api/auth/movies";
        let q = ListQuery::parse(Some("offset=2&limit=2&movie=6"));
        let (next, prev) = q.links(base, 5);
        assert_eq!(
            next.as_deref(),
            Some("http://h/api/auth/movies?limit=2&movie=6&offset=4")
        );
        assert_eq!(
            prev.as_deref(),
            Some("http://h/api/auth/movies?limit=2&movie=6")
        );
        let q = ListQuery::parse(Some("limit=2&offset=4"));
        assert_eq!(
            q.links(base, 5),
            (None, Some(format!("{base}?limit=2&offset=2")))
        );
        let q = ListQuery::parse(Some("limit=10"));
        assert_eq!(q.links(base, 5), (None, None));
    }
}
