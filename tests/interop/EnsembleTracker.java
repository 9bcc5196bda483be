// /zookeeper/config and Curator's ensemble tracker (on by default, and in Flink).
// Usage: java EnsembleTracker ZABD_BINARY WORK_DIR ZOOKEEPER_CLASSPATH
//
// For each form of server line (pre-3.5 `host:quorum:election` with clientPort, and with
// `;host:clientPort`), a 3-member Apache ZooKeeper 3.8 ensemble and a 3-member zabd
// ensemble are started from the same zoo.cfg shape, and their /zookeeper/config must be
// the same text once ports are named by position. Then, on zabd with the pre-3.5 form, a
// Curator 5.4 client with the ensemble tracker on holds an ephemeral node while each
// member in turn is killed and restarted: it must keep its session, its ephemeral and all
// three members in its connect string. One line per check, then 'tracker: N passed, M failed'.

import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import org.apache.curator.framework.*;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.CreateMode;

public class EnsembleTracker {
    static String zabd, zkcp;
    static Path work;
    static int passed = 0, failed = 0;
    static final List<Process> all = new ArrayList<>();

    static void check(String name, boolean ok, String detail) {
        if (ok) { passed++; System.out.println("ok - " + name); }
        else { failed++; System.out.println("FAIL - " + name + ": " + detail); }
    }

    static int[] freePorts(int n) throws IOException {
        List<ServerSocket> ss = new ArrayList<>();
        int[] p = new int[n];
        for (int i = 0; i < n; i++) {
            ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
            ss.add(s);
            p[i] = s.getLocalPort();
        }
        for (ServerSocket s : ss) s.close();
        return p;
    }

    static String word(int port, String w) {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 2000);
            s.setSoTimeout(5000);
            s.getOutputStream().write(w.getBytes(StandardCharsets.US_ASCII));
            return new String(s.getInputStream().readAllBytes(), StandardCharsets.US_ASCII);
        } catch (IOException e) {
            return "";
        }
    }

    static String mode(int port) {
        for (String l : word(port, "srvr").split("\n")) if (l.startsWith("Mode: ")) return l.substring(6);
        return "";
    }

    /** One ensemble of three members, all zabd or all ZooKeeper. */
    static class Ensemble {
        final boolean zk;
        final int[] ports;
        final Path dir;
        final Process[] procs = new Process[3];

        Ensemble(String name, boolean zk, boolean clientAddrInLines) throws Exception {
            this.zk = zk;
            this.ports = freePorts(9);
            this.dir = work.resolve(name);
            for (int i = 0; i < 3; i++) {
                Path d = dir.resolve("m" + (i + 1));
                Files.createDirectories(d);
                Files.writeString(d.resolve("myid"), (i + 1) + "\n");
                StringBuilder cfg = new StringBuilder();
                cfg.append("tickTime=200\ninitLimit=20\nsyncLimit=5\ndataDir=").append(d).append('\n');
                cfg.append("clientPort=").append(client(i)).append("\nclientPortAddress=127.0.0.1\n");
                cfg.append("4lw.commands.whitelist=*\nadmin.enableServer=false\n");
                for (int j = 0; j < 3; j++) {
                    cfg.append("server.").append(j + 1).append("=127.0.0.1:").append(ports[j * 3])
                       .append(':').append(ports[j * 3 + 1]);
                    if (clientAddrInLines) cfg.append(";127.0.0.1:").append(client(j));
                    cfg.append('\n');
                }
                Files.writeString(dir.resolve("m" + (i + 1) + ".cfg"), cfg.toString());
            }
            for (int i = 0; i < 3; i++) start(i);
            awaitSettled();
        }

        int client(int i) { return ports[i * 3 + 2]; }

        String connectString() {
            return "127.0.0.1:" + client(0) + ",127.0.0.1:" + client(1) + ",127.0.0.1:" + client(2);
        }

        void start(int i) throws IOException {
            String cfg = dir.resolve("m" + (i + 1) + ".cfg").toString();
            List<String> cmd = zk
                ? List.of("java", "-Xmx256m", "-cp", zkcp, "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg)
                : List.of(zabd, "--config", cfg);
            ProcessBuilder pb = new ProcessBuilder(cmd);
            pb.redirectErrorStream(true);
            pb.redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("m" + (i + 1) + ".log").toFile()));
            procs[i] = pb.start();
            synchronized (all) { all.add(procs[i]); }
        }

        void kill(int i) throws InterruptedException {
            procs[i].destroyForcibly();
            procs[i].waitFor();
        }

        void awaitSettled() throws InterruptedException {
            long end = System.currentTimeMillis() + 120_000;
            while (System.currentTimeMillis() < end) {
                List<String> m = new ArrayList<>();
                for (int i = 0; i < 3; i++) m.add(mode(client(i)));
                Collections.sort(m);
                if (m.equals(List.of("follower", "follower", "leader"))) return;
                Thread.sleep(100);
            }
            throw new IllegalStateException(dir + " did not settle");
        }

        /** /zookeeper/config with every port named by its place: q1 e1 c1 ... */
        String normalizedConfig() throws Exception {
            String raw;
            try (CuratorFramework c = CuratorFrameworkFactory.builder().connectString(connectString())
                    .ensembleTracker(false).retryPolicy(new ExponentialBackoffRetry(100, 10)).build()) {
                c.start();
                c.blockUntilConnected();
                raw = new String(c.getData().forPath("/zookeeper/config"), StandardCharsets.UTF_8);
            }
            String[] names = {"q", "e", "c"};
            for (int k = 8; k >= 0; k--) raw = raw.replace(Integer.toString(ports[k]), names[k % 3] + (k / 3 + 1));
            return raw;
        }

        void stop() throws InterruptedException {
            for (int i = 0; i < 3; i++) if (procs[i] != null) kill(i);
        }
    }

    public static void main(String[] a) throws Exception {
        zabd = a[0];
        work = Paths.get(a[1]);
        zkcp = a[2];
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            synchronized (all) { for (Process p : all) p.destroyForcibly(); }
        }));
        for (boolean withClient : new boolean[] {false, true}) {
            String form = withClient ? "server lines with ;host:clientPort" : "server lines without a client address";
            Ensemble zk = new Ensemble("zk-" + withClient, true, withClient);
            String want = zk.normalizedConfig();
            zk.stop();
            Ensemble z = new Ensemble("zabd-" + withClient, false, withClient);
            String got = z.normalizedConfig();
            check("/zookeeper/config as ZooKeeper 3.8 writes it, " + form, want.equals(got),
                  "ZooKeeper:\n" + want + "\nzabd:\n" + got);
            if (withClient) { z.stop(); continue; }
            trackerKeepsSession(z);
            z.stop();
        }
        System.out.println("tracker: " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    /** Kill and restart each member in turn under a Curator client with the tracker on. */
    static void trackerKeepsSession(Ensemble z) throws Exception {
        try (CuratorFramework c = CuratorFrameworkFactory.builder().connectString(z.connectString())
                .sessionTimeoutMs(15_000).connectionTimeoutMs(5_000)
                .retryPolicy(new ExponentialBackoffRetry(100, 29, 1000)).build()) {
            c.start();
            c.blockUntilConnected();
            c.create().withMode(CreateMode.EPHEMERAL).forPath("/tracker-eph");
            long session = c.getZookeeperClient().getZooKeeper().getSessionId();
            // Give the tracker time to read /zookeeper/config and act on it.
            Thread.sleep(1000);
            for (int i = 0; i < 3; i++) {
                z.kill(i);
                boolean served = false;
                long end = System.currentTimeMillis() + 60_000;
                while (!served && System.currentTimeMillis() < end) {
                    try {
                        served = c.checkExists().forPath("/tracker-eph") != null;
                    } catch (Exception e) {
                        Thread.sleep(100);
                    }
                }
                long now = c.getZookeeperClient().getZooKeeper().getSessionId();
                String cs = c.getZookeeperClient().getCurrentConnectionString();
                check("member " + (i + 1) + " killed: the session and its ephemeral live on",
                      served && now == session, "served=" + served + " session " + session + " -> " + now);
                Set<String> named = new TreeSet<>(Arrays.asList(cs.split(",")));
                Set<String> members = new TreeSet<>(Arrays.asList(z.connectString().split(",")));
                check("member " + (i + 1) + " killed: the connect string still names all three",
                      named.equals(members), cs);
                z.start(i);
                z.awaitSettled();
            }
        }
    }
}
