// Data-directory interop helper on Apache ZooKeeper's Java client.
//   write  HOST:PORT SESSIONFILE  a varied workload; leaves one session open (ephemeral inside)
//   dump   HOST:PORT              the whole tree: path, data, every Stat field, ACLs
//   resume HOST:PORT SESSIONFILE  resumes the saved session, checks its ephemeral, leaves it open

import java.nio.file.*;
import java.util.*;
import java.util.concurrent.*;
import org.apache.zookeeper.*;
import org.apache.zookeeper.data.*;

public class DataDirCheck {
    static ZooKeeper connect(String hosts, long id, byte[] pw) throws Exception {
        CountDownLatch up = new CountDownLatch(1);
        final boolean[] expired = {false};
        Watcher w = e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) up.countDown();
            if (e.getState() == Watcher.Event.KeeperState.Expired) { expired[0] = true; up.countDown(); }
        };
        ZooKeeper zk = pw == null ? new ZooKeeper(hosts, 30000, w) : new ZooKeeper(hosts, 30000, w, id, pw);
        if (!up.await(60, TimeUnit.SECONDS) || expired[0]) throw new IllegalStateException("session not established (expired=" + expired[0] + ")");
        return zk;
    }

    static void write(String hosts, String sessionFile) throws Exception {
        ZooKeeper zk = connect(hosts, 0, null);
        List<ACL> open = ZooDefs.Ids.OPEN_ACL_UNSAFE;
        zk.create("/app", "root".getBytes(), open, CreateMode.PERSISTENT);
        zk.create("/app/empty", new byte[0], open, CreateMode.PERSISTENT);
        zk.create("/app/null", null, open, CreateMode.PERSISTENT);
        for (int i = 0; i < 5; i++) zk.create("/app/seq-", ("s" + i).getBytes(), open, CreateMode.PERSISTENT_SEQUENTIAL);
        zk.setData("/app", "root-2".getBytes(), 0);
        zk.setData("/app", "root-3".getBytes(), -1);
        zk.delete("/app/seq-0000000002", -1);
        zk.addAuthInfo("digest", "dd:pw".getBytes());
        zk.create("/app/secret", "s".getBytes(), ZooDefs.Ids.CREATOR_ALL_ACL, CreateMode.PERSISTENT);
        zk.setACL("/app/empty", ZooDefs.Ids.READ_ACL_UNSAFE, 0);
        zk.create("/app/box", new byte[0], open, CreateMode.CONTAINER);
        zk.create("/app/box/item", "i".getBytes(), open, CreateMode.PERSISTENT);
        zk.multi(Arrays.asList(
            Op.create("/app/job", "j".getBytes(), open, CreateMode.PERSISTENT),
            Op.create("/app/job/locks", new byte[0], open, CreateMode.PERSISTENT),
            Op.create("/app/job/locks/l", new byte[0], open, CreateMode.EPHEMERAL)));
        try {
            zk.multi(Arrays.asList(Op.setData("/app", "x".getBytes(), -1), Op.create("/app", null, open, CreateMode.PERSISTENT)));
        } catch (KeeperException.NodeExistsException expected) { }
        zk.create("/app/eph", "e".getBytes(), open, CreateMode.EPHEMERAL);
        zk.create("/app/eph-seq-", "e".getBytes(), open, CreateMode.EPHEMERAL_SEQUENTIAL);
        byte[] big = new byte[500_000];
        Arrays.fill(big, (byte) 3);
        zk.create("/app/big", big, open, CreateMode.PERSISTENT);
        // A second session that closes: its ephemeral goes.
        ZooKeeper other = connect(hosts, 0, null);
        other.create("/app/short", new byte[0], open, CreateMode.EPHEMERAL);
        other.close();
        Files.write(Paths.get(sessionFile), (Long.toHexString(zk.getSessionId()) + " " +
            Base64.getEncoder().encodeToString(zk.getSessionPasswd())).getBytes());
        System.out.println("wrote workload; open session 0x" + Long.toHexString(zk.getSessionId()));
        System.exit(0); // leave the session open
    }

    static void dumpNode(ZooKeeper zk, String path, StringBuilder out) throws Exception {
        Stat st = new Stat();
        byte[] data = zk.getData(path, false, st);
        List<ACL> acl = zk.getACL(path, new Stat());
        out.append(path).append(" data=").append(data == null ? "null" : Base64.getEncoder().encodeToString(data))
           .append(" stat=").append(st.toString().trim()).append(" acl=").append(acl).append('\n');
        List<String> kids = zk.getChildren(path, false);
        Collections.sort(kids);
        for (String k : kids) dumpNode(zk, (path.equals("/") ? "" : path) + "/" + k, out);
    }

    public static void main(String[] a) throws Exception {
        switch (a[0]) {
            case "write": write(a[1], a[2]); break;
            case "dump": {
                ZooKeeper zk = connect(a[1], 0, null);
                zk.addAuthInfo("digest", "dd:pw".getBytes());
                StringBuilder out = new StringBuilder();
                dumpNode(zk, "/", out);
                System.out.print(out);
                zk.close();
                break;
            }
            case "resume": {
                String[] s = new String(Files.readAllBytes(Paths.get(a[2]))).trim().split(" ");
                long id = Long.parseUnsignedLong(s[0], 16);
                ZooKeeper zk = connect(a[1], id, Base64.getDecoder().decode(s[1]));
                if (zk.getSessionId() != id) throw new IllegalStateException("different session");
                Stat st = zk.exists("/app/eph", false);
                if (st == null || st.getEphemeralOwner() != id) throw new IllegalStateException("ephemeral missing: " + st);
                System.out.println("resumed session 0x" + s[0] + " with its ephemerals");
                System.exit(0); // leave it open, so both servers' trees still hold its ephemerals
                break;
            }
            default: throw new IllegalArgumentException(a[0]);
        }
    }
}
