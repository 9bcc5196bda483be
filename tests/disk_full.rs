//! A disk that fills up: zabd stops acknowledging (it exits, code 3, saying why) and never
//! acknowledges a write it could not store. Runs as root (CI does): it mounts a 4 MiB tmpfs.
//! A read-only or failing disk takes the same path (a failed write or sync); Linux does not
//! let a test remount a filesystem read-only under an open file, so this one is staged.

mod common;

use common::Zabd;
use std::process::Command;
use zookeeper_client::{Acls, Client, CreateMode};

struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(at: &std::path::Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_full_disk_stops_acknowledgements_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    let _mount = Mount::tmpfs(&mnt, "4m");
    let data = mnt.join("data");
    let outer = tempfile::tempdir().unwrap();
    let mut z = Zabd::start_at(outer, &data, "pre_alloc_size_kb = 64");
    let c = Client::connect(&z.addr).await.unwrap();
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let value = vec![7u8; 20_000];
    let mut acked = Vec::new();
    for i in 0..1000 {
        let p = format!("/n{i}");
        match c.create(&p, &value, &opts).await {
            Ok(_) => acked.push(p),
            Err(_) => break,
        }
    }
    assert!(
        !acked.is_empty() && acked.len() < 1000,
        "the disk filled part way: {}",
        acked.len()
    );
    assert_eq!(z.wait_exit(), Some(3));
    assert!(z
        .log()
        .contains("stopping so that nothing unsynced is acknowledged"));
    drop(c);

    // What an operator does: give it room (here: copy the directory to a bigger disk).
    let roomy = tempfile::tempdir().unwrap();
    copy_dir(&data, &roomy.path().join("data"));
    let z2 = Zabd::start_at(tempfile::tempdir().unwrap(), &roomy.path().join("data"), "");
    let c = Client::connect(&z2.addr).await.unwrap();
    for p in &acked {
        assert!(
            c.check_stat(p).await.unwrap().is_some(),
            "acknowledged {p} lost"
        );
    }
}
