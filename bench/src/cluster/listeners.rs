//! Which process listens on a loopback port: how the benchmark finds the
//! shared servers (tansu, SecantusDB, Redis) to read their CPU from /proc.
//! Only processes of the same user can be seen; others are reported as
//! unknown.

use std::path::Path;

/// The pid of a process holding a listening TCP socket on `port`.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if holds_any(&entry.path().join("fd"), &wanted) {
            return Some(pid);
        }
    }
    None
}

fn holds_any(fd_dir: &Path, wanted: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(fd_dir) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|target| target.to_str().map(|t| wanted.iter().any(|w| w == t)))
            .unwrap_or(false)
    })
}

/// Inodes of the sockets of a /proc/net/tcp table in state LISTEN (0A) on
/// local port `port`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let port_hex = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit(':').next()?;
            (local_port == port_hex && *f.get(3)? == "0A")
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// The port of `host:port`, `redis://host:port/`, `mongodb://host:port/...`
/// (the first host of a list).
pub fn port_of(address: &str) -> Option<u16> {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host_port = rest.split(['/', ',', '?']).next()?;
    host_port.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listening_sockets_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0\n\
            1: 0100007F:2384 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0\n\
            2: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4444 1 0\n";
        assert_eq!(listening_inodes(table, 9092), vec![4242]);
        assert_eq!(listening_inodes(table, 6379), vec![4444]);
        assert!(listening_inodes(table, 27017).is_empty());
    }

    #[test]
    fn ports_of_server_addresses() {
        assert_eq!(port_of("127.0.0.1:9092"), Some(9092));
        assert_eq!(port_of("127.0.0.1:9092,10.0.0.2:9092"), Some(9092));
        assert_eq!(port_of("redis://127.0.0.1:6379/"), Some(6379));
        assert_eq!(
            port_of("mongodb://u:p@127.0.0.1:27017/?directConnection=true"),
            Some(27017)
        );
        assert_eq!(port_of("localhost"), None);
    }

    #[test]
    fn finds_this_process_listening() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
    }
}
