// N Curator 5.4 clients writing through a leader's kill -9 (tests/interop/failover_suite.py
// drives it, against zabd and against Apache ZooKeeper 3.8).
// Usage: java FailoverClients CONNECT_STRING CLIENTS SECONDS KILL_FILE [STOP_FILE]
// (with STOP_FILE, the clients also stop writing once that file exists: reconfig_suite.py
// runs them through a whole migration).
//
// Each client has its own CuratorFramework (its own session, on whichever member its
// ZooKeeper client picks from the connect string) with a ConnectionStateListener, and
// writes its own node with setData in a loop. It prints `session <i> 0x<id>` for each
// client and then `ready`; the driver then kills the leader and writes the kill time
// (epoch ms) to KILL_FILE. At the end, one line per client:
// `client <i> session=0x<id> suspended=<n> lost=<n> reconnected=<n> writes=<n>
//  pause_ms=<from its last write before the kill to its first after> failed=<n>`.

import java.nio.file.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import org.apache.curator.framework.*;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.RetryNTimes;

public class FailoverClients {
    static class Lane {
        final int i;
        CuratorFramework c;
        final AtomicInteger suspended = new AtomicInteger(), lost = new AtomicInteger(),
                reconnected = new AtomicInteger(), failed = new AtomicInteger();
        final List<Long> writes = Collections.synchronizedList(new ArrayList<>());

        Lane(int i) { this.i = i; }
    }

    public static void main(String[] a) throws Exception {
        String connect = a[0];
        int n = Integer.parseInt(a[1]);
        long seconds = Long.parseLong(a[2]);
        Path killFile = Paths.get(a[3]);
        Path stopFile = a.length > 4 ? Paths.get(a[4]) : null;
        List<Lane> lanes = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Lane l = new Lane(i);
            l.c = CuratorFrameworkFactory.builder().connectString(connect)
                    .sessionTimeoutMs(10000).connectionTimeoutMs(15000)
                    .retryPolicy(new RetryNTimes(100, 100)).build();
            l.c.getConnectionStateListenable().addListener((cf, s) -> {
                if (s == ConnectionState.SUSPENDED) l.suspended.incrementAndGet();
                if (s == ConnectionState.LOST) l.lost.incrementAndGet();
                if (s == ConnectionState.RECONNECTED) l.reconnected.incrementAndGet();
                System.out.println("state " + l.i + " " + s + " " + System.currentTimeMillis());
            });
            l.c.start();
            if (!l.c.blockUntilConnected(60, TimeUnit.SECONDS)) throw new RuntimeException("client " + i + " did not connect");
            String path = "/fw/c" + i;
            if (l.c.checkExists().forPath(path) == null) l.c.create().creatingParentsIfNeeded().forPath(path, new byte[0]);
            System.out.println("session " + i + " 0x" + Long.toHexString(l.c.getZookeeperClient().getZooKeeper().getSessionId()));
            lanes.add(l);
        }
        System.out.println("ready");
        System.out.flush();
        long end = System.currentTimeMillis() + seconds * 1000;
        List<Thread> ts = new ArrayList<>();
        for (Lane l : lanes) {
            Thread t = new Thread(() -> {
                byte[] v = new byte[16];
                while (System.currentTimeMillis() < end && (stopFile == null || !Files.exists(stopFile))) {
                    try {
                        l.c.setData().forPath("/fw/c" + l.i, v);
                        l.writes.add(System.currentTimeMillis());
                    } catch (Exception e) {
                        l.failed.incrementAndGet();
                    }
                    try { Thread.sleep(10); } catch (InterruptedException e) { return; }
                }
            });
            t.start();
            ts.add(t);
        }
        for (Thread t : ts) t.join();
        long kill = Files.exists(killFile) ? Long.parseLong(Files.readString(killFile).trim()) : -1;
        for (Lane l : lanes) {
            long before = -1, after = -1;
            synchronized (l.writes) {
                for (long w : l.writes) {
                    if (w <= kill) before = w;
                    else if (after < 0) after = w;
                }
            }
            long pause = (kill < 0 || before < 0 || after < 0) ? -1 : after - before;
            System.out.println("client " + l.i + " session=0x" + Long.toHexString(l.c.getZookeeperClient().getZooKeeper().getSessionId())
                    + " suspended=" + l.suspended.get() + " lost=" + l.lost.get() + " reconnected=" + l.reconnected.get()
                    + " writes=" + l.writes.size() + " pause_ms=" + pause + " failed=" + l.failed.get());
            l.c.close();
        }
        System.out.flush();
    }
}
