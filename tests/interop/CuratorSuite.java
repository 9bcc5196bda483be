// Interop suite on Apache Curator 5.4 (Debian's jars) against a running server.
// Usage: java CuratorSuite HOST:PORT. One line per check, then 'curator: N passed, M failed'.

import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import org.apache.curator.framework.*;
import org.apache.curator.framework.api.transaction.*;
import org.apache.curator.framework.recipes.cache.*;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.VersionedValue;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

public class CuratorSuite {
    static String hosts;
    static int passed = 0, failed = 0;
    static final long DEADLINE_MS = 60_000;

    interface Check { void run() throws Exception; }

    static void check(String name, Check c) {
        try {
            c.run();
            passed++;
            System.out.println("ok - " + name);
        } catch (Throwable t) {
            failed++;
            System.out.println("FAILED - " + name);
            t.printStackTrace(System.out);
        }
    }

    static void require(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static void waitFor(String what, java.util.function.BooleanSupplier cond) throws InterruptedException {
        long end = System.currentTimeMillis() + DEADLINE_MS;
        while (System.currentTimeMillis() < end) {
            if (cond.getAsBoolean()) return;
            Thread.sleep(20);
        }
        throw new AssertionError("timed out waiting for " + what);
    }

    static CuratorFramework client() throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.builder().connectString(hosts)
            .sessionTimeoutMs(15000).connectionTimeoutMs(15000)
            .retryPolicy(new ExponentialBackoffRetry(100, 5)).build();
        c.start();
        require(c.blockUntilConnected(30, TimeUnit.SECONDS), "connected");
        return c;
    }

    public static void main(String[] args) throws Exception {
        hosts = args[0];
        check("create2 and createContainer via creatingParentContainersIfNeeded", () -> {
            try (CuratorFramework c = client()) {
                Stat st = new Stat();
                c.create().creatingParentContainersIfNeeded().storingStatIn(st)
                    .forPath("/cur/a/b/c", "v".getBytes());
                require(st.getCzxid() > 0 && st.getDataLength() == 1, "create2 returned a stat: " + st);
                require(new String(c.getData().forPath("/cur/a/b/c")).equals("v"), "data");
                String seq = c.create().withMode(CreateMode.EPHEMERAL_SEQUENTIAL).forPath("/cur/a/s-");
                require(seq.equals("/cur/a/s-0000000001"), "sequence from parent cversion: " + seq);
            }
        });
        check("LeaderLatch across three clients; leadership moves when the leader closes", () -> {
            List<CuratorFramework> cs = new ArrayList<>();
            List<LeaderLatch> latches = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                CuratorFramework c = client();
                cs.add(c);
                LeaderLatch l = new LeaderLatch(c, "/cur/latch", "c" + i);
                l.start();
                latches.add(l);
            }
            for (int round = 0; round < 3; round++) {
                waitFor("exactly one leader", () -> latches.stream().filter(LeaderLatch::hasLeadership).count() == 1);
                LeaderLatch leader = latches.stream().filter(LeaderLatch::hasLeadership).findFirst().get();
                leader.close();
                latches.remove(leader);
            }
            require(latches.isEmpty(), "every latch led once");
            for (CuratorFramework c : cs) c.close();
        });
        check("InterProcessMutex: exact counting over 3 clients x 2 threads x 20", () -> {
            List<CuratorFramework> cs = new ArrayList<>();
            for (int i = 0; i < 3; i++) cs.add(client());
            int[] counter = {0};
            AtomicInteger inside = new AtomicInteger(), maxInside = new AtomicInteger();
            ExecutorService pool = Executors.newFixedThreadPool(6);
            List<Future<?>> fs = new ArrayList<>();
            for (CuratorFramework c : cs) for (int t = 0; t < 2; t++) fs.add(pool.submit(() -> {
                InterProcessMutex m = new InterProcessMutex(c, "/cur/mutex");
                for (int i = 0; i < 20; i++) {
                    require(m.acquire(60, TimeUnit.SECONDS), "acquired");
                    try {
                        maxInside.accumulateAndGet(inside.incrementAndGet(), Math::max);
                        int v = counter[0];
                        Thread.yield();
                        counter[0] = v + 1;
                        inside.decrementAndGet();
                    } finally { m.release(); }
                }
                return null;
            }));
            for (Future<?> f : fs) f.get(120, TimeUnit.SECONDS);
            pool.shutdown();
            require(counter[0] == 120, "count " + counter[0]);
            require(maxInside.get() == 1, "max holders " + maxInside.get());
            for (CuratorFramework c : cs) c.close();
        });
        check("SharedCount: concurrent trySetCount loses no increment", () -> {
            List<CuratorFramework> cs = new ArrayList<>();
            List<SharedCount> counts = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                CuratorFramework c = client();
                cs.add(c);
                SharedCount sc = new SharedCount(c, "/cur/counter", 0);
                sc.start();
                counts.add(sc);
            }
            ExecutorService pool = Executors.newFixedThreadPool(3);
            List<Future<?>> fs = new ArrayList<>();
            for (SharedCount sc : counts) fs.add(pool.submit(() -> {
                for (int i = 0; i < 20; i++) {
                    while (true) {
                        VersionedValue<Integer> v = sc.getVersionedValue();
                        if (sc.trySetCount(v, v.getValue() + 1)) break;
                    }
                }
                return null;
            }));
            for (Future<?> f : fs) f.get(120, TimeUnit.SECONDS);
            pool.shutdown();
            waitFor("every SharedCount sees 60", () -> counts.stream().allMatch(s -> s.getCount() == 60));
            for (SharedCount sc : counts) sc.close();
            for (CuratorFramework c : cs) c.close();
        });
        check("TreeCache events", () -> {
            try (CuratorFramework c = client()) {
                c.create().creatingParentsIfNeeded().forPath("/cur/tree");
                List<String> events = new CopyOnWriteArrayList<>();
                TreeCache tc = TreeCache.newBuilder(c, "/cur/tree").build();
                CountDownLatch init = new CountDownLatch(1);
                tc.getListenable().addListener((cl, e) -> {
                    if (e.getType() == TreeCacheEvent.Type.INITIALIZED) init.countDown();
                    else if (e.getData() != null) events.add(e.getType() + " " + e.getData().getPath());
                });
                tc.start();
                require(init.await(60, TimeUnit.SECONDS), "initialized");
                c.create().forPath("/cur/tree/x", "1".getBytes());
                waitFor("added", () -> events.contains("NODE_ADDED /cur/tree/x"));
                c.setData().forPath("/cur/tree/x", "2".getBytes());
                waitFor("updated", () -> events.contains("NODE_UPDATED /cur/tree/x"));
                c.delete().forPath("/cur/tree/x");
                waitFor("removed", () -> events.contains("NODE_REMOVED /cur/tree/x"));
                tc.close();
            }
        });
        check("CuratorCache events (persistent recursive watch)", () -> {
            try (CuratorFramework c = client()) {
                c.create().creatingParentsIfNeeded().forPath("/cur/cc");
                List<String> events = new CopyOnWriteArrayList<>();
                CuratorCache cc = CuratorCache.build(c, "/cur/cc");
                cc.listenable().addListener((type, oldData, data) ->
                    events.add(type + " " + (data != null ? data.getPath() : oldData.getPath())));
                cc.start();
                c.create().forPath("/cur/cc/y", "1".getBytes());
                waitFor("created", () -> events.contains("NODE_CREATED /cur/cc/y"));
                c.setData().forPath("/cur/cc/y", "2".getBytes());
                waitFor("changed", () -> events.contains("NODE_CHANGED /cur/cc/y"));
                c.delete().forPath("/cur/cc/y");
                waitFor("deleted", () -> events.contains("NODE_DELETED /cur/cc/y"));
                cc.close();
            }
        });
        check("auth pipelined behind the handshake: builder().authorization and addAuthInfo", () -> {
            // Curator's authorization(...) and a bare addAuthInfo right after the constructor
            // both send their auth packet before the ConnectResponse is in.
            byte[] alice = "alice:pw".getBytes();
            for (int round = 0; round < 5; round++) {
                String p = "/cur-auth-" + round;
                try (CuratorFramework c = CuratorFrameworkFactory.builder().connectString(hosts)
                        .retryPolicy(new ExponentialBackoffRetry(100, 10))
                        .authorization("digest", alice).build()) {
                    c.start();
                    c.create().withACL(ZooDefs.Ids.CREATOR_ALL_ACL).forPath(p, "secret".getBytes());
                }
                try (CuratorFramework c = CuratorFrameworkFactory.builder().connectString(hosts)
                        .retryPolicy(new ExponentialBackoffRetry(100, 10))
                        .authorization("digest", alice).build()) {
                    c.start();
                    c.sync().forPath(p);
                    require(new String(c.getData().forPath(p)).equals("secret"), "Curator read " + p);
                }
                ZooKeeper z = new ZooKeeper(hosts, 30000, e -> {});
                try {
                    z.addAuthInfo("digest", alice);
                    z.sync(p, (rc, path, ctx) -> {}, null);
                    require(new String(z.getData(p, false, null)).equals("secret"), "ZooKeeper read " + p);
                } finally {
                    z.close();
                }
                ZooKeeper anon = new ZooKeeper(hosts, 30000, e -> {});
                try {
                    anon.getData(p, false, null);
                    require(false, "read without the identity");
                } catch (KeeperException.NoAuthException expected) {
                } finally {
                    anon.close();
                }
            }
        });
        check("transaction: all or nothing", () -> {
            try (CuratorFramework c = client()) {
                c.create().creatingParentsIfNeeded().forPath("/cur/tx");
                List<CuratorTransactionResult> r = c.transaction().forOperations(
                    c.transactionOp().create().forPath("/cur/tx/n", "a".getBytes()),
                    c.transactionOp().create().forPath("/cur/tx/n/locks"),
                    c.transactionOp().create().withMode(CreateMode.EPHEMERAL).forPath("/cur/tx/n/locks/l"));
                require(r.size() == 3 && r.get(2).getResultPath().equals("/cur/tx/n/locks/l"), "results " + r);
                try {
                    c.transaction().forOperations(
                        c.transactionOp().setData().forPath("/cur/tx/n", "b".getBytes()),
                        c.transactionOp().create().forPath("/cur/tx/n"));
                    throw new AssertionError("expected NodeExists");
                } catch (KeeperException.NodeExistsException e) {
                    // expected
                }
                require(new String(c.getData().forPath("/cur/tx/n")).equals("a"), "nothing applied");
            }
        });
        System.out.println("curator: " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
