//! [`InputStash`]: how an operator that reads an exchange takes its input, a bounded amount of
//! work per activation.
//!
//! timely's `for_each` on an input reads until the channel is empty, and timely tells the
//! other workers what an operator took only when its activation ends. An operator that did its
//! work inside `for_each` could therefore, while the worker feeding a busy source kept sending,
//! stay in one activation: its progress reached nobody, and every worker's frontier (and every
//! window) fell behind the data. So these operators read everything that waits into a stash,
//! holding capabilities at each batch's timestamp for their two outputs, then work through at
//! most [`MAX_BATCHES_PER_ACTIVATION`] batches and ask to run again. A batch still in the stash
//! counts as input not yet seen: [`InputStash::earliest`] is the time to fire and expire by.

use std::collections::VecDeque;

use edgeflow_engine::arrow::array::RecordBatch;
use edgeflow_engine::timely::communication::Pull;
use edgeflow_engine::timely::dataflow::channels::Message;
use edgeflow_engine::timely::dataflow::operators::Capability;
use edgeflow_engine::timely::dataflow::operators::generic::InputHandleCore;
use edgeflow_engine::timely::progress::frontier::MutableAntichain;
use edgeflow_engine::{Batch, EventTime};

/// Most batches an operator works through per activation; the rest wait for the next one.
pub(crate) const MAX_BATCHES_PER_ACTIVATION: usize = 16;

/// A batch read and not yet worked on, with capabilities at its timestamp for the operator's
/// main output and its side output.
pub(crate) struct Stashed {
    pub(crate) main: Capability<EventTime>,
    pub(crate) side: Capability<EventTime>,
    pub(crate) rows: RecordBatch,
}

impl Stashed {
    /// The batch's timestamp: the watermark it arrived with.
    pub(crate) fn watermark(&self) -> EventTime {
        *self.main.time()
    }
}

/// Batches read from one input and not yet worked on, in arrival order.
#[derive(Default)]
pub(crate) struct InputStash {
    batches: VecDeque<Stashed>,
}

impl InputStash {
    /// Reads every batch waiting on `input`, with capabilities for output ports `main` and
    /// `side`.
    pub(crate) fn read<P: Pull<Message<EventTime, Batch>>>(
        &mut self,
        input: &mut InputHandleCore<EventTime, Batch, P>,
        main: usize,
        side: usize,
    ) {
        input.for_each(|capability, data| {
            let (Some(rows), Some(&watermark)) = (data.take(), capability.least()) else {
                return;
            };
            self.batches.push_back(Stashed {
                main: capability.delayed(&watermark, main),
                side: capability.delayed(&watermark, side),
                rows,
            });
        });
    }

    /// The batches to work on in this activation, oldest first (at most
    /// [`MAX_BATCHES_PER_ACTIVATION`]). Afterwards, [`Self::is_empty`] says whether the
    /// operator must ask to run again.
    pub(crate) fn this_activation(&mut self) -> impl Iterator<Item = Stashed> + '_ {
        let take = self.batches.len().min(MAX_BATCHES_PER_ACTIVATION);
        self.batches.drain(..take)
    }

    /// Whether every batch read has been worked on.
    pub(crate) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The earliest time input may still have: the input `frontier`'s, or that of a batch
    /// still here. `None`: the input has ended and nothing waits.
    pub(crate) fn earliest(&self, frontier: &MutableAntichain<EventTime>) -> Option<EventTime> {
        frontier
            .frontier()
            .iter()
            .copied()
            .chain(self.batches.iter().map(Stashed::watermark))
            .min()
    }
}
