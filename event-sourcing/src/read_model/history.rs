//! Who did what, and when: a list of small facts per user, oldest first,
//! that a read model keeps for "my activity" (12 bytes a fact while its
//! code fits in 32 bits, else 16), and writes into its snapshot as
//! fixed-size records.

use serde::Serialize;

use super::compact::{CompactVec, Narrow};
use super::cow::CowRanges;
use super::snapshot::{Damaged, Decoder, Encoder, i64_at};

/// One thing a user did: when it was stored, and what it was, in the
/// model's own code (a movie's id, a kind of account event...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fact {
    /// When it was stored (microseconds since the epoch).
    pub at_micros: i64,
    /// What it was, as the model that keeps it encodes it.
    pub what: i64,
}

/// A [`Fact`] in 12 bytes: its time in two halves (so that it aligns on 4
/// bytes), its code in 32 bits.
#[derive(Debug, Clone, Copy)]
pub struct NarrowFact {
    at_low: u32,
    at_high: i32,
    what: i32,
}

impl Narrow for Fact {
    type Narrow = NarrowFact;

    fn narrow(self) -> Option<NarrowFact> {
        Some(NarrowFact {
            at_low: self.at_micros as u32,
            at_high: (self.at_micros >> 32) as i32,
            what: i32::try_from(self.what).ok()?,
        })
    }

    fn widen(n: NarrowFact) -> Self {
        Fact {
            at_micros: (i64::from(n.at_high) << 32) | i64::from(n.at_low),
            what: n.what.into(),
        }
    }
}

/// Every user's facts, by user, in the order they were applied; kept
/// copy-on-write (see [`CowRanges`]), so a clone is cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histories<U: Ord> {
    by_user: CowRanges<U, CompactVec<Fact>>,
}

impl<U: Ord> Default for Histories<U> {
    fn default() -> Self {
        Self {
            by_user: CowRanges::default(),
        }
    }
}

/// A map of users to their facts, in user order.
impl<U: Ord + Copy + Into<i64> + From<i64> + Serialize> Serialize for Histories<U> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.by_user.serialize(serializer)
    }
}

impl<U: Ord + Copy + Into<i64> + From<i64>> Histories<U> {
    /// Adds what `user` did at `at_micros`.
    pub fn push(&mut self, user: U, at_micros: i64, what: i64) {
        self.by_user
            .get_or_default(user)
            .push(Fact { at_micros, what });
    }

    /// Forgets every fact of `user` (an erased account).
    pub fn forget(&mut self, user: U) {
        self.by_user.remove(user);
    }

    /// How many of `user`'s facts were stored at or after `since_micros`
    /// (counting at most `limit`, newest first), and when the oldest of
    /// those was: what a quota over a sliding window needs, in O(`limit`).
    pub fn recent(&self, user: U, since_micros: i64, limit: usize) -> (usize, Option<i64>) {
        let Some(facts) = self.by_user.get(user) else {
            return (0, None);
        };
        let mut oldest = None;
        let count = facts
            .iter()
            .rev()
            .take(limit)
            .take_while(|f| f.at_micros >= since_micros)
            .inspect(|f| oldest = Some(f.at_micros))
            .count();
        (count, oldest)
    }

    /// The newest `newest` facts of `user` (all with `None`), newest first,
    /// and how many there are in all.
    pub fn newest(&self, user: U, newest: Option<usize>) -> (Vec<Fact>, usize) {
        let Some(facts) = self.by_user.get(user) else {
            return (Vec::new(), 0);
        };
        let page = facts
            .iter()
            .rev()
            .take(newest.unwrap_or(usize::MAX))
            .collect();
        (page, facts.len())
    }

    /// Writes every user's facts: users in order, each with its facts as
    /// 16-byte records.
    pub fn encode(&self, out: &mut Encoder<'_>) {
        out.count(self.by_user.len());
        for (user, facts) in self.by_user.iter() {
            out.i64(user);
            out.records_of(facts.iter(), 16, |f, slot| {
                slot[..8].copy_from_slice(&f.at_micros.to_le_bytes());
                slot[8..].copy_from_slice(&f.what.to_le_bytes());
            });
        }
    }

    /// Reads what [`Histories::encode`] wrote.
    pub fn decode(input: &mut Decoder<'_>) -> Result<Self, Damaged> {
        let mut by_user = CowRanges::default();
        for _ in 0..input.count(16)? {
            let user = input.id()?;
            let mut facts = CompactVec::default();
            input.records(16, |record| {
                facts.push(Fact {
                    at_micros: i64_at(record, 0),
                    what: i64_at(record, 8),
                });
                Ok(())
            })?;
            by_user.insert(user, facts);
        }
        Ok(Self { by_user })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_come_first_and_the_count_is_of_all() {
        let mut h = Histories::<i64>::default();
        for (at, what) in [(1, 10), (2, 20), (3, 30)] {
            h.push(7, at, what);
        }
        h.push(8, 4, 40);
        let (page, count) = h.newest(7, Some(2));
        assert_eq!(count, 3);
        assert_eq!(page.iter().map(|f| f.what).collect::<Vec<_>>(), [30, 20]);
        assert_eq!(h.newest(7, None).0.len(), 3);
        assert_eq!(h.newest(9, None), (vec![], 0));
    }

    #[test]
    fn recent_facts_are_counted_up_to_a_limit_with_the_oldest_time() {
        let mut h = Histories::<i64>::default();
        for at in [10, 20, 30, 40] {
            h.push(7, at, at);
        }
        assert_eq!(h.recent(7, 20, 10), (3, Some(20)));
        assert_eq!(h.recent(7, 20, 2), (2, Some(30)));
        assert_eq!(h.recent(7, 41, 10), (0, None));
        assert_eq!(h.recent(8, 0, 10), (0, None));
    }
}
