// A small checkpointing, stateful streaming job for the Flink HA tests (compiled by the test
// with javac against flink-dist): a number sequence, throttled, keyed into four counters
// held in keyed state, checkpointed every second, into a discarding sink. Restoring it
// restores the source's position and the counters.

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

public class StatefulJob {
    /** Slows the source to a few hundred records a second. */
    public static class Throttle extends RichMapFunction<Long, Long> {
        @Override
        public Long map(Long v) throws Exception {
            Thread.sleep(5);
            return v;
        }
    }

    /** Counts the records of each key in keyed state. */
    public static class Count extends RichMapFunction<Long, Long> {
        private transient ValueState<Long> seen;

        @Override
        public void open(OpenContext ctx) {
            seen = getRuntimeContext().getState(new ValueStateDescriptor<>("seen", Long.class));
        }

        @Override
        public Long map(Long v) throws Exception {
            Long n = seen.value();
            long next = (n == null ? 0 : n) + 1;
            seen.update(next);
            return next;
        }
    }

    public static void main(String[] args) throws Exception {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.enableCheckpointing(1000);
        env.fromSequence(0, Long.MAX_VALUE)
                .map(new Throttle())
                .keyBy(v -> v % 4)
                .map(new Count())
                .sinkTo(new DiscardingSink<>());
        env.execute(args.length > 0 ? args[0] : "zabd-ha-job");
    }
}
