//! The report herald-bench prints: what ran, then the memory and the CPU
//! sections. `bench/run` adds the machine and commit above it and the
//! explanation below, and writes the whole to bench/results/.

mod cpu;
mod memory;

use crate::args::Args;
use crate::measure::Sample;
use crate::scenarios::fan_out::FanOuts;
use crate::scenarios::idle_memory::IdleMemory;
use std::fmt::Write as _;

/// Everything one run measured.
pub struct Run<'a> {
    pub args: &'a Args,
    /// The target's own description (see `Target::describe`).
    pub target: String,
    pub load_start: String,
    pub load_end: String,
    pub memory: &'a IdleMemory,
    /// The memory reading after the fan-outs.
    pub after: &'a Sample,
    pub fan_outs: &'a FanOuts,
}

/// The report, as text.
pub fn render(run: &Run) -> String {
    let args = run.args;
    let mut r = String::new();
    let _ = writeln!(r, "{}", run.target);
    let _ = writeln!(
        r,
        "N = {} WebSocket connections ({} user id(s), handshakes {} at a time), \
         M = {} topic messages of ~{} B payload per fan-out",
        args.connections, args.users, args.concurrency, args.messages, args.payload_bytes,
    );
    let _ = writeln!(
        r,
        "load average at start {}, at end {}",
        run.load_start, run.load_end
    );
    let _ = writeln!(r);
    memory::render(&mut r, args, run.memory, run.after);
    let _ = writeln!(r);
    cpu::render(&mut r, args, run.fan_outs);
    r
}
