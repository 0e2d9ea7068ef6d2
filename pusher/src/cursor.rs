//! The cursor rule: what a stream position, a live event or a replay page
//! means for a connection's cursor on one stream. Pure: no I/O, no clock;
//! the connection does the reading, writing and waiting it decides.
//!
//! A cursor is the last seq of a stream written to the socket. Every event,
//! replayed or live, is judged against it: at or below it, a repeat; just
//! after it, the next; beyond that, a gap to fill from the store first. That
//! one rule is what makes replay-then-live seamless, and what absorbs
//! re-consumed topics, retried dispatches and out-of-order publishes.

use herald_common::store::StreamInfo;

/// Where a stream's cursor goes when the client asks to continue it from a
/// position (the handshake's `since`, `resume`, `subscribe`).
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// The position can be continued: the cursor goes there.
    Continue { cursor: u64 },
    /// It cannot (stream recreated, position ahead of the stream, or what
    /// follows it expired): the client is told to reload, and the stream goes
    /// on from `from`, the oldest seq still kept.
    Reset { from: u64 },
}

impl Placement {
    /// The cursor this placement leaves the stream at.
    pub fn cursor(&self) -> u64 {
        match *self {
            Placement::Continue { cursor } => cursor,
            Placement::Reset { from } => from - 1,
        }
    }
}

/// Places a cursor at `wanted`, which the client says belongs to `epoch`
/// (when it knows one), on the stream `info` describes.
pub fn place(wanted: u64, epoch: Option<&str>, info: &StreamInfo) -> Placement {
    let recreated = epoch.is_some_and(|e| e != info.epoch) || wanted > info.head;
    // `first` is at least 1, so `wanted + 1 < first` never overflows for a
    // position at or below the head.
    let expired = !recreated && wanted + 1 < info.first;
    if recreated || expired {
        Placement::Reset {
            from: info.first.max(1),
        }
    } else {
        Placement::Continue { cursor: wanted }
    }
}

/// What one event means for a cursor.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// At or below the cursor: already written, dropped.
    Repeat,
    /// Just after the cursor: written, and the cursor moves to it.
    Next,
    /// Beyond the next: the seqs from the cursor's next up to `until` are
    /// missing and must be read from the store before this event is written.
    Gap { until: u64 },
}

pub fn judge(cursor: u64, seq: u64) -> Verdict {
    match seq.checked_sub(cursor) {
        None | Some(0) => Verdict::Repeat,
        Some(1) => Verdict::Next,
        Some(_) => Verdict::Gap { until: seq - 1 },
    }
}

/// What a page read from the store after a cursor means (the page holds the
/// stored seqs after the cursor, ascending).
#[derive(Debug, PartialEq, Eq)]
pub enum Page {
    /// Nothing stored after the cursor (yet).
    Empty,
    /// The page does not start at the cursor's next seq: seqs before
    /// `next_kept` are missing, either not readable yet (a lagging read) or
    /// expired (messages may carry different ttls).
    HoleBefore { next_kept: u64 },
    /// The first `run` entries follow the cursor without a hole and are
    /// written. `hole_after`: a hole follows them inside the page, so the
    /// entries after it are not written yet.
    Run { run: usize, hole_after: bool },
}

pub fn read_page(cursor: u64, seqs: impl IntoIterator<Item = u64>) -> Page {
    let mut expected = cursor.saturating_add(1);
    let mut run = 0;
    for seq in seqs {
        if seq != expected {
            if run == 0 {
                return Page::HoleBefore { next_kept: seq };
            }
            return Page::Run {
                run,
                hole_after: true,
            };
        }
        run += 1;
        expected = expected.saturating_add(1);
    }
    if run == 0 {
        Page::Empty
    } else {
        Page::Run {
            run,
            hole_after: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(first: u64, head: u64) -> StreamInfo {
        StreamInfo {
            epoch: "e1".into(),
            first,
            head,
            acked: 0,
        }
    }

    #[test]
    fn a_position_within_the_kept_entries_is_continued() {
        assert_eq!(
            place(3, None, &info(1, 5)),
            Placement::Continue { cursor: 3 }
        );
        assert_eq!(
            place(3, Some("e1"), &info(1, 5)),
            Placement::Continue { cursor: 3 }
        );
        // The head itself: nothing to replay, but continued.
        assert_eq!(
            place(5, None, &info(1, 5)),
            Placement::Continue { cursor: 5 }
        );
        // Just before the oldest kept entry: nothing was lost.
        assert_eq!(
            place(3, None, &info(4, 5)),
            Placement::Continue { cursor: 3 }
        );
        // An empty stream, from the start.
        assert_eq!(
            place(0, None, &info(1, 0)),
            Placement::Continue { cursor: 0 }
        );
    }

    #[test]
    fn another_epoch_resets_to_the_oldest_kept_entry() {
        let placement = place(3, Some("e0"), &info(2, 5));
        assert_eq!(placement, Placement::Reset { from: 2 });
        assert_eq!(placement.cursor(), 1);
    }

    #[test]
    fn a_position_ahead_of_the_head_resets() {
        assert_eq!(place(6, None, &info(1, 5)), Placement::Reset { from: 1 });
        assert_eq!(
            place(u64::MAX, None, &info(1, 5)),
            Placement::Reset { from: 1 }
        );
    }

    #[test]
    fn a_position_before_expired_entries_resets() {
        assert_eq!(place(2, None, &info(4, 5)), Placement::Reset { from: 4 });
        // Everything expired: the stream goes on after its head.
        assert_eq!(place(0, None, &info(6, 5)), Placement::Reset { from: 6 });
    }

    #[test]
    fn events_are_repeats_next_or_gaps() {
        assert_eq!(judge(5, 3), Verdict::Repeat);
        assert_eq!(judge(5, 5), Verdict::Repeat);
        assert_eq!(judge(5, 6), Verdict::Next);
        assert_eq!(judge(5, 9), Verdict::Gap { until: 8 });
        assert_eq!(judge(0, 1), Verdict::Next);
        // An unplaced cursor (at "everything") takes nothing.
        assert_eq!(judge(u64::MAX, u64::MAX), Verdict::Repeat);
    }

    #[test]
    fn a_page_is_written_up_to_its_first_hole() {
        assert_eq!(read_page(3, []), Page::Empty);
        assert_eq!(
            read_page(3, [4, 5, 6]),
            Page::Run {
                run: 3,
                hole_after: false
            }
        );
        assert_eq!(
            read_page(3, [4, 6, 7]),
            Page::Run {
                run: 1,
                hole_after: true
            }
        );
        assert_eq!(read_page(3, [5, 6]), Page::HoleBefore { next_kept: 5 });
        assert_eq!(read_page(0, [3]), Page::HoleBefore { next_kept: 3 });
    }
}
