//! One process's memory and CPU time, from /proc/<pid>/status and stat.

use anyhow::{Context, Result};
use std::time::Instant;

/// One reading of a process from /proc.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub rss_kib: u64,
    pub rss_anon_kib: u64,
    pub threads: u64,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// stime alone (kernel: syscalls, and on loopback much of TCP), ticks.
    pub sys_ticks: u64,
    pub at: Instant,
}

impl Sample {
    pub fn read(pid: u32) -> Result<Sample> {
        let dir = format!("/proc/{pid}");
        let status = std::fs::read_to_string(format!("{dir}/status"))
            .with_context(|| format!("reading {dir}/status (is the server running?)"))?;
        let (user, sys) = cpu_ticks(&dir)?;
        Ok(Sample {
            rss_kib: status_field(&status, "VmRSS")?,
            rss_anon_kib: status_field(&status, "RssAnon")?,
            threads: status_field(&status, "Threads")?,
            cpu_ticks: user + sys,
            sys_ticks: sys,
            at: Instant::now(),
        })
    }
}

/// The generator's own utime + stime, clock ticks.
pub fn own_cpu_ticks() -> Result<u64> {
    let (user, sys) = cpu_ticks("/proc/self")?;
    Ok(user + sys)
}

fn cpu_ticks(proc_dir: &str) -> Result<(u64, u64)> {
    parse_cpu_ticks(&std::fs::read_to_string(format!("{proc_dir}/stat"))?)
}

/// The number of a `Name:   value [kB]` line of /proc/<pid>/status.
fn status_field(status: &str, name: &str) -> Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))
        .with_context(|| format!("no {name} in status"))?;
    let value = line[name.len() + 1..]
        .split_whitespace()
        .next()
        .with_context(|| format!("empty {name}"))?;
    Ok(value.parse()?)
}

/// utime and stime of a process, in clock ticks (fields 14 and 15 of
/// /proc/<pid>/stat).
fn parse_cpu_ticks(stat: &str) -> Result<(u64, u64)> {
    // The command name (field 2) may hold spaces and parentheses: count from
    // its last `)`.
    let rest = stat
        .rfind(')')
        .and_then(|end| stat.get(end + 2..))
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime, stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\therald\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmRSSmax:\t1 kB\nVmRSS:\t   75432 kB\nRssAnon:\t   64200 kB\n\
        RssFile:\t   11232 kB\nThreads:\t9\n";

    #[test]
    fn status_fields_by_exact_name() {
        assert_eq!(status_field(STATUS, "VmRSS").unwrap(), 75432);
        assert_eq!(status_field(STATUS, "RssAnon").unwrap(), 64200);
        assert_eq!(status_field(STATUS, "Threads").unwrap(), 9);
        assert!(status_field(STATUS, "VmHWM").is_err());
        assert!(status_field("VmRSS:\n", "VmRSS").is_err());
    }

    #[test]
    fn stat_cpu_ticks_after_a_command_name_with_spaces() {
        // Fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime ...
        let stat = "26119 (tokio (rt) x) S 1 2 3 0 -1 4194560 100 0 0 0 463 458 0 0 20 0 9";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), (463, 458));
        assert!(parse_cpu_ticks("26119 (herald) S 1 2").is_err());
        assert!(parse_cpu_ticks("garbage").is_err());
        assert!(parse_cpu_ticks("1 (x)").is_err());
    }

    #[test]
    fn reads_this_process() {
        let me = Sample::read(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.threads >= 1);
        assert!(me.sys_ticks <= me.cpu_ticks);
    }
}
