//! Finding a partition of the consumer group that no member consumes.
//!
//! tansu 0.6.0's group coordinator (docs/operations.md, known limits) expires a member that
//! stopped heartbeating (its host was killed) without starting a rebalance: the group stays
//! `Stable`, the survivors keep their old assignment, and the dead member's partitions are never
//! read again. A survivor sees this from outside its own assignment: the group's committed
//! offset on such a partition stays where it is while records wait after it. Leaving the group
//! and joining again (a new consumer) makes the coordinator start a new generation with a live
//! leader, which hands every partition to a live member.
//!
//! A partition whose owner is alive but slow (a handler refusing for a while) looks the same
//! from outside; rejoining then costs one rebalance and, at worst, a redelivery, which the
//! consumers already tolerate (at least once). `STALL_AFTER` is longer than one handler call may
//! take, so a single slow call does not set it off.
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long records may wait on a partition outside this member's assignment, with the group's
/// committed offset there unchanged, before this member rejoins the group. Longer than a
/// handler call's bound (30 s) plus a backoff, and than the broker's session timeout (45 s,
/// after which the coordinator has expired a dead member, so the rejoin does not assign it
/// partitions again) less the time the stall took to be noticed.
pub const STALL_AFTER: Duration = Duration::from_secs(40);

/// One partition outside this member's assignment, at one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (the partition's start when nothing was committed).
    pub committed: i64,
    /// The offset the next record will take (the high watermark).
    pub end: i64,
}

/// What earlier checks saw: for each partition with records waiting, the committed offset and
/// when it was first seen there.
#[derive(Default)]
pub struct Watch {
    waiting: HashMap<(String, i32), (i64, Instant)>,
}

impl Watch {
    /// Takes one check's partitions (those outside this member's assignment) and returns a
    /// description of one that has had records waiting at the same committed offset for
    /// `STALL_AFTER` or longer, if any.
    pub fn observe(&mut self, partitions: &[Partition], now: Instant) -> Option<String> {
        let mut waiting = HashMap::new();
        let mut stalled = None;
        for p in partitions.iter().filter(|p| p.committed < p.end) {
            let key = (p.topic.clone(), p.partition);
            let since = match self.waiting.get(&key) {
                Some(&(offset, since)) if offset == p.committed => since,
                _ => now,
            };
            if stalled.is_none() && now.duration_since(since) >= STALL_AFTER {
                stalled = Some(p);
            }
            waiting.insert(key, (p.committed, since));
        }
        self.waiting = waiting;
        let stalled = stalled?;
        Some(format!(
            "partition {} of topic {} has stayed at offset {} of {} for {} s",
            stalled.partition,
            stalled.topic,
            stalled.committed,
            stalled.end,
            STALL_AFTER.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, committed: i64, end: i64) -> Partition {
        Partition {
            topic: "patient".into(),
            partition,
            committed,
            end,
        }
    }

    #[test]
    fn records_waiting_at_one_offset_for_the_whole_period_are_a_stall() {
        let start = Instant::now();
        let mut watch = Watch::default();
        assert_eq!(watch.observe(&[at(0, 5, 9)], start), None);
        assert_eq!(
            watch.observe(
                &[at(0, 5, 10)],
                start + STALL_AFTER - Duration::from_secs(1)
            ),
            None
        );
        let stall = watch.observe(&[at(0, 5, 10)], start + STALL_AFTER);
        assert_eq!(
            stall.as_deref(),
            Some("partition 0 of topic patient has stayed at offset 5 of 10 for 40 s")
        );
    }

    #[test]
    fn progress_or_a_drained_partition_starts_the_period_again() {
        let start = Instant::now();
        let mut watch = Watch::default();
        watch.observe(&[at(0, 5, 9), at(1, 2, 3)], start);
        // Partition 0 advanced; partition 1 was drained, then got a new record.
        watch.observe(&[at(0, 6, 9), at(1, 3, 3)], start + Duration::from_secs(20));
        let later = start + STALL_AFTER;
        assert_eq!(watch.observe(&[at(0, 6, 9), at(1, 3, 4)], later), None);
        assert!(watch
            .observe(&[at(0, 6, 9), at(1, 3, 4)], later + Duration::from_secs(20))
            .is_some_and(|s| s.starts_with("partition 0 ")));
    }

    #[test]
    fn a_partition_that_joined_this_members_assignment_is_forgotten() {
        let start = Instant::now();
        let mut watch = Watch::default();
        watch.observe(&[at(0, 5, 9)], start);
        // Partition 0 was assigned to this member, so the next check does not list it.
        watch.observe(&[], start + Duration::from_secs(10));
        assert_eq!(watch.observe(&[at(0, 5, 9)], start + STALL_AFTER), None);
    }
}
