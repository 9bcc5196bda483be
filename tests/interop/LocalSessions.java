// Local sessions (localSessionsEnabled) on a 3-member zabd ensemble, through Apache
// ZooKeeper's own Java client. Run by run_all.sh:
//   java LocalSessions <addr1,addr2,addr3> upgrading|no-upgrading
// Each check prints "ok ..." or "FAIL ..."; the exit status is the number of failures.
//
// On every member (leader and followers alike):
// - a new session is local: the member's mntr counts it in zk_local_sessions, and its
//   persistent writes, reads and versioned setData work as on any session;
// - taken to another member, it is expired there;
// - without upgrading, an ephemeral create gets EPHEMERALONLOCALSESSION;
// - with upgrading, an ephemeral create (alone, or in a multi) succeeds, the session is
//   global from then on (it moves to another member intact, the others see its ephemeral
//   owned by it), and its ephemerals go when it closes.

import java.io.*;
import java.net.*;
import java.util.*;
import java.util.concurrent.*;
import org.apache.zookeeper.*;
import org.apache.zookeeper.data.Stat;

public class LocalSessions {
    static int failures = 0;

    static void check(boolean ok, String what) {
        System.out.println((ok ? "ok   " : "FAIL ") + what);
        if (!ok) failures++;
    }

    static String word(String addr, String w) throws IOException {
        String[] hp = addr.split(":");
        try (Socket s = new Socket(hp[0], Integer.parseInt(hp[1]))) {
            s.setSoTimeout(10000);
            s.getOutputStream().write(w.getBytes());
            return new String(s.getInputStream().readAllBytes());
        }
    }

    static long localSessions(String addr) throws IOException {
        for (String l : word(addr, "mntr").split("\n")) {
            if (l.startsWith("zk_local_sessions\t")) return Long.parseLong(l.split("\t")[1].trim());
        }
        return -1;
    }

    /// A client on `addr`, connected (or expired) within 30 s.
    static ZooKeeper connect(String addr, long id, byte[] pw, BlockingQueue<Watcher.Event.KeeperState> states)
            throws Exception {
        Watcher w = e -> { if (e.getType() == Watcher.Event.EventType.None) states.add(e.getState()); };
        ZooKeeper zk = id == 0 ? new ZooKeeper(addr, 10000, w) : new ZooKeeper(addr, 10000, w, id, pw);
        return zk;
    }

    static Watcher.Event.KeeperState firstState(BlockingQueue<Watcher.Event.KeeperState> q) throws Exception {
        Watcher.Event.KeeperState s = q.poll(30, TimeUnit.SECONDS);
        return s;
    }

    public static void main(String[] args) throws Exception {
        String[] members = args[0].split(",");
        boolean upgrading = args[1].equals("upgrading");
        for (int i = 0; i < members.length; i++) {
            String here = members[i], there = members[(i + 1) % members.length];
            String mode = word(here, "srvr").contains("Mode: leader") ? "leader" : "follower";
            String tag = "member " + (i + 1) + " (" + mode + "): ";
            long before = localSessions(here);
            BlockingQueue<Watcher.Event.KeeperState> q = new LinkedBlockingQueue<>();
            ZooKeeper zk = connect(here, 0, null, q);
            check(firstState(q) == Watcher.Event.KeeperState.SyncConnected, tag + "connected");
            check(localSessions(here) == before + 1, tag + "the session is local (zk_local_sessions "
                    + before + " -> " + localSessions(here) + ")");
            String p = "/local-" + i + "-" + (upgrading ? "u" : "n");
            zk.create(p, "a".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
            Stat st = zk.setData(p, "b".getBytes(), 0);
            check(st.getVersion() == 1 && new String(zk.getData(p, false, null)).equals("b"),
                    tag + "persistent create, versioned setData and read");
            check(st.getEphemeralOwner() == 0, tag + "a persistent node has no owner");
            if (!upgrading) {
                try {
                    zk.create(p + "/e", null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
                    check(false, tag + "an ephemeral create on a local session must fail");
                } catch (KeeperException e) {
                    check(e.code() == KeeperException.Code.EPHEMERALONLOCALSESSION,
                            tag + "ephemeral create: " + e.code());
                }
                try {
                    zk.multi(Arrays.asList(Op.create(p + "/m", null, ZooDefs.Ids.OPEN_ACL_UNSAFE,
                            CreateMode.EPHEMERAL_SEQUENTIAL)));
                    check(false, tag + "a multi creating an ephemeral must fail too");
                } catch (KeeperException e) {
                    check(e.code() == KeeperException.Code.EPHEMERALONLOCALSESSION,
                            tag + "multi with an ephemeral create: " + e.code());
                }
                // Taken elsewhere, a local session is unknown: expired.
                BlockingQueue<Watcher.Event.KeeperState> q2 = new LinkedBlockingQueue<>();
                ZooKeeper moved = connect(there, zk.getSessionId(), zk.getSessionPasswd(), q2);
                check(firstState(q2) == Watcher.Event.KeeperState.Expired,
                        tag + "the local session taken to another member is expired there");
                moved.close();
                zk.close();
                check(localSessions(here) == before, tag + "closed: zk_local_sessions back to " + before);
                continue;
            }
            String e = zk.create(p + "/e", null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
            check(e.equals(p + "/e"), tag + "ephemeral create upgrades the session and succeeds");
            check(localSessions(here) == before, tag + "no longer local after the upgrade");
            long id = zk.getSessionId();
            BlockingQueue<Watcher.Event.KeeperState> q2 = new LinkedBlockingQueue<>();
            ZooKeeper other = connect(there, 0, null, q2);
            check(firstState(q2) == Watcher.Event.KeeperState.SyncConnected, tag + "a second client elsewhere");
            CountDownLatch synced = new CountDownLatch(1);
            other.sync("/", (rc, path, ctx) -> synced.countDown(), null);
            synced.await(30, TimeUnit.SECONDS);
            Stat es = other.exists(p + "/e", false);
            check(es != null && es.getEphemeralOwner() == id, tag + "another member sees the ephemeral, owned by the session");
            // Global now: the session moves to another member intact.
            BlockingQueue<Watcher.Event.KeeperState> q3 = new LinkedBlockingQueue<>();
            ZooKeeper moved = connect(there, id, zk.getSessionPasswd(), q3);
            check(firstState(q3) == Watcher.Event.KeeperState.SyncConnected && moved.getSessionId() == id,
                    tag + "the upgraded session resumes on another member");
            check(moved.exists(p + "/e", false) != null, tag + "its ephemeral is still there");
            moved.close();
            zk.close();
            CountDownLatch synced2 = new CountDownLatch(1);
            other.sync("/", (rc, path, ctx) -> synced2.countDown(), null);
            synced2.await(30, TimeUnit.SECONDS);
            check(other.exists(p + "/e", false) == null, tag + "closed: its ephemeral is gone");
            // A fresh local session whose first write is a multi with an ephemeral create.
            BlockingQueue<Watcher.Event.KeeperState> q4 = new LinkedBlockingQueue<>();
            ZooKeeper m = connect(here, 0, null, q4);
            check(firstState(q4) == Watcher.Event.KeeperState.SyncConnected, tag + "another session");
            List<OpResult> r = m.multi(Arrays.asList(
                    Op.create(p + "/lock-", null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL_SEQUENTIAL),
                    Op.setData(p, "c".getBytes(), 1)));
            check(r.size() == 2 && r.get(0) instanceof OpResult.CreateResult,
                    tag + "a multi with an ephemeral create upgrades the session and commits");
            m.close();
            other.close();
        }
        System.out.println(failures == 0 ? "all local-session checks passed" : failures + " checks failed");
        System.exit(failures);
    }
}
