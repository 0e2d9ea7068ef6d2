//! The whole machine: busy CPU time over all processes, and load average.

use anyhow::{Context, Result};

/// CPU time the whole machine spent busy (all CPUs, all processes), ticks.
pub fn busy_ticks() -> Result<u64> {
    parse_busy_ticks(&std::fs::read_to_string("/proc/stat")?)
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg writes them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| parse_loadavg(&s))
        .unwrap_or_else(|_| "?".into())
}

fn parse_busy_ticks(stat: &str) -> Result<u64> {
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Ok(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

fn parse_loadavg(loadavg: &str) -> String {
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_everything_but_idle_and_iowait() {
        let stat = "cpu  100 20 30 5000 70 6 8 9 40 0\ncpu0 50 10 15 2500 35 3 4 4 20 0\n";
        assert_eq!(parse_busy_ticks(stat).unwrap(), 100 + 20 + 30 + 6 + 8 + 9);
        // Older kernels without steal: the missing fields count as zero.
        assert_eq!(
            parse_busy_ticks("cpu 1 2 3 4 5 6 7\n").unwrap(),
            1 + 2 + 3 + 6 + 7
        );
        assert!(parse_busy_ticks("").is_err());
    }

    #[test]
    fn loadavg_keeps_the_three_averages() {
        assert_eq!(
            parse_loadavg("0.20 0.90 1.61 2/345 6789\n"),
            "0.20 0.90 1.61"
        );
    }
}
