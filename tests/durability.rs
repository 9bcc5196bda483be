//! Durability through the real binary: acknowledged writes survive kill -9, sessions survive
//! restarts, torn tails are cut, corruption refuses to start, bad snapshots fall back, purge
//! keeps what recovery needs, a full disk stops acknowledgements.

mod common;

use common::{wait_for, Zabd};
use std::time::Duration;
use zookeeper_client::{Acls, Client, CreateMode, Stat};

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

async fn client(z: &Zabd) -> Client {
    Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&z.addr)
        .await
        .unwrap()
}

fn version2(z: &Zabd) -> std::path::PathBuf {
    z.data_dir().join("version-2")
}

fn files(z: &Zabd, prefix: &str) -> Vec<std::path::PathBuf> {
    zabd::persist::list(&version2(z), prefix)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

async fn write_some(c: &Client, prefix: &str, n: usize) -> Vec<(String, Stat)> {
    let mut out = Vec::new();
    for i in 0..n {
        let p = format!("{prefix}{i}");
        let (s, _) = c.create(&p, p.as_bytes(), &persistent()).await.unwrap();
        out.push((p, s));
    }
    out
}

async fn assert_present(c: &Client, written: &[(String, Stat)]) {
    for (p, s) in written {
        let (data, st) = c
            .get_data(p)
            .await
            .unwrap_or_else(|e| panic!("{p} lost: {e}"));
        assert_eq!(data, p.as_bytes());
        assert_eq!(&st, s, "{p}: every Stat field survives");
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill9() {
    let mut z = Zabd::start();
    let c = client(&z).await;
    c.create("/d", b"", &persistent()).await.unwrap();
    let written = write_some(&c, "/d/n", 200).await;
    let s = c.set_data("/d/n7", b"/d/n7", Some(0)).await.unwrap();
    drop(c);
    z.restart();
    let c = client(&z).await;
    let mut expect = written.clone();
    expect[7].1 = s;
    assert_present(&c, &expect).await;
    assert!(z.four("mntr").contains("zk_digest_mismatches_count\t0"));
}

#[tokio::test]
async fn sessions_survive_a_restart_and_expire_by_their_own_timeout() {
    let mut z = Zabd::start_with("tick_time = 100");
    let keep = Client::connector()
        .with_session_timeout(Duration::from_secs(2))
        .with_detached()
        .connect(&z.addr)
        .await
        .unwrap();
    let gone = Client::connector()
        .with_session_timeout(Duration::from_secs(1))
        .with_detached()
        .connect(&z.addr)
        .await
        .unwrap();
    let eph = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    keep.create("/kept", b"", &eph).await.unwrap();
    gone.create("/lapsed", b"", &eph).await.unwrap();
    let info = keep.session().clone();
    let id = keep.session_id();
    drop((keep, gone));
    z.restart();
    // The client comes back (to the new address) within its timeout: same session.
    let back = Client::connector()
        .with_session(info)
        .with_session_timeout(Duration::from_secs(2))
        .connect(&z.addr)
        .await
        .unwrap();
    assert_eq!(back.session_id(), id);
    assert!(back.check_stat("/kept").await.unwrap().is_some());
    // The other session never returns and expires after the restart, taking its ephemeral.
    wait_for("the abandoned session expires", || async {
        back.check_stat("/lapsed").await.unwrap().is_none()
    })
    .await;
    assert!(back.check_stat("/kept").await.unwrap().is_some());
}

#[tokio::test]
async fn a_torn_tail_is_cut_with_a_warning() {
    let mut z = Zabd::start();
    let c = client(&z).await;
    let written = write_some(&c, "/t", 20).await;
    drop(c);
    z.kill9();
    let log = files(&z, "log").pop().unwrap();
    let bytes = std::fs::read(&log).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    // Half an entry after the last one, as a crash in the middle of a write leaves.
    let mut f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    f.seek(SeekFrom::Start(end as u64)).unwrap();
    f.write_all(&[0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 90, 1, 2, 3])
        .unwrap();
    drop(f);
    z.restart();
    let c = client(&z).await;
    assert_present(&c, &written).await;
    assert!(z.log().contains("cutting off a torn tail"), "{}", z.log());
    // And writing goes on after it.
    c.create("/after", b"", &persistent()).await.unwrap();
}

#[tokio::test]
async fn corruption_before_the_tail_refuses_to_start_naming_file_and_offset() {
    let mut z = Zabd::start();
    let c = client(&z).await;
    write_some(&c, "/x", 20).await;
    drop(c);
    z.kill9();
    let log = files(&z, "log").pop().unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[200] ^= 0x08;
    std::fs::write(&log, &bytes).unwrap();
    let code = z.restart_expecting_failure();
    assert_ne!(code, Some(0));
    let text = z.log();
    let name = log.file_name().unwrap().to_str().unwrap().to_string();
    assert!(text.contains(&name) && text.contains("offset"), "{text}");
}

#[tokio::test]
async fn a_bad_snapshot_falls_back_to_the_previous_one_and_the_logs() {
    let mut z = Zabd::start_with("snap_count = 20");
    let c = client(&z).await;
    let written = write_some(&c, "/s", 120).await;
    drop(c);
    wait_for("several snapshots", || {
        let n = files(&z, "snapshot").len();
        async move { n >= 4 }
    })
    .await;
    z.kill9();
    assert!(files(&z, "log").len() >= 3, "a new log after each snapshot");
    let newest = files(&z, "snapshot").pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&newest, &bytes).unwrap();
    z.restart();
    let c = client(&z).await;
    assert_present(&c, &written).await;
    assert!(z.log().contains("skipping an invalid snapshot"));
}

#[tokio::test]
async fn an_unfinished_snapshot_is_neither_read_nor_kept() {
    let mut z = Zabd::start();
    let c = client(&z).await;
    let written = write_some(&c, "/u", 20).await;
    drop(c);
    z.kill9();
    // What a kill -9 in the middle of a streamed snapshot leaves behind.
    let tmp = version2(&z).join("snapshot.ffffff.tmp");
    std::fs::write(&tmp, b"ZKSN partial").unwrap();
    assert!(files(&z, "snapshot").iter().all(|p| *p != tmp));
    z.restart();
    let c = client(&z).await;
    assert_present(&c, &written).await;
    assert!(
        !tmp.exists(),
        "the unfinished snapshot is removed at startup"
    );
    assert!(
        !z.log().contains("skipping an invalid snapshot"),
        "{}",
        z.log()
    );
}

#[tokio::test]
async fn purge_keeps_what_recovery_needs() {
    let mut z = Zabd::start_with("snap_count = 20");
    let c = client(&z).await;
    // Snapshots may come further apart than snap_count (the snapshot thread rests after
    // a slow one), so write until there are enough of them, within bounds.
    let mut written = Vec::new();
    for round in 0..100 {
        written.extend(write_some(&c, &format!("/p{round}-"), 30).await);
        if files(&z, "snapshot").len() >= 6 {
            break;
        }
    }
    drop(c);
    wait_for("many snapshots", || {
        let n = files(&z, "snapshot").len();
        async move { n >= 6 }
    })
    .await;
    z.kill9();
    let before = (files(&z, "snapshot").len(), files(&z, "log").len());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zabd"))
        .args(["purge", "-n", "3", "--config"])
        .arg(z.dir.path().join("zabd.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files(&z, "snapshot").len(), 3);
    assert!(files(&z, "log").len() < before.1, "{before:?}");
    z.restart();
    let c = client(&z).await;
    assert_present(&c, &written).await;
}

#[tokio::test]
async fn force_sync_off_still_writes_the_log() {
    let mut z = Zabd::start_with("force_sync = false");
    let c = client(&z).await;
    let written = write_some(&c, "/f", 20).await;
    drop(c);
    z.restart();
    let c = client(&z).await;
    assert_present(&c, &written).await;
    assert!(z.log().contains("force_sync is off"));
}

#[tokio::test]
async fn a_separate_data_log_dir_holds_the_logs() {
    let logs = tempfile::tempdir().unwrap();
    let mut z = Zabd::start_with(&format!("data_log_dir = \"{}\"", logs.path().display()));
    let c = client(&z).await;
    let written = write_some(&c, "/l", 10).await;
    drop(c);
    z.restart();
    let c = client(&z).await;
    assert_present(&c, &written).await;
    assert!(
        zabd::persist::list(&logs.path().join("version-2"), "log")
            .unwrap()
            .len()
            == 2
    );
    assert!(files(&z, "log").is_empty(), "no logs beside the snapshots");
    assert!(!files(&z, "snapshot").is_empty());
}

#[tokio::test]
async fn a_missing_log_segment_refuses_to_start() {
    let mut z = Zabd::start_with("snap_count = 20");
    let c = client(&z).await;
    write_some(&c, "/g", 100).await;
    drop(c);
    wait_for("several logs", || {
        let n = files(&z, "log").len();
        async move { n >= 4 }
    })
    .await;
    z.kill9();
    // Keep only the oldest snapshot, and lose a log in the middle.
    let snaps = files(&z, "snapshot");
    for s in &snaps[1..] {
        std::fs::remove_file(s).unwrap();
    }
    let logs = files(&z, "log");
    std::fs::remove_file(&logs[1]).unwrap();
    assert_ne!(z.restart_expecting_failure(), Some(0));
    assert!(z.log().contains("missing log segment"), "{}", z.log());
}
