//! Readings of processes and of the machine from /proc, and the statistics
//! the report draws from them.

mod machine;
mod percentile;
mod process;

pub use machine::{busy_ticks, loadavg};
pub use percentile::percentile;
pub use process::{Sample, own_cpu_ticks};

/// The unit of /proc's CPU times: clock ticks per second (`getconf CLK_TCK`).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub ticks_per_sec: u64,
}

impl Clock {
    pub fn secs(self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks_per_sec as f64
    }
}
