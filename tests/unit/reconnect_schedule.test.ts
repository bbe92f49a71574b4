/**
 * The hub link's reconnect schedule (src/core/backoff.ts, documented in docs/hub.md): a random
 * 0.4–0.8 s between attempts for the first minute of an outage, then exponential growth with full
 * jitter from 1 s up to 15 s; `reset()` starts a new outage. Driven with a hand-moved clock.
 */
import assert from "node:assert/strict";
import { createReconnectSchedule } from "../../src/core/backoff.ts";

/** The link's settings, with a clock the test moves and a random source it chooses. */
function schedule(random: () => number) {
  let t = 1_000_000;
  const s = createReconnectSchedule({
    fastForMs: 60_000,
    fastMinMs: 400,
    fastMaxMs: 800,
    baseMs: 1_000,
    maxMs: 15_000,
    random,
    now: () => t,
  });
  return {
    s,
    /** Waits out each delay (plus `attemptMs` for the attempt itself); returns [outage ms, delay]. */
    run(attempts: number, attemptMs = 0): [number, number][] {
      const out: [number, number][] = [];
      for (let i = 0; i < attempts; i++) {
        const d = s.next();
        out.push([s.outageMs(), d]);
        t += d + attemptMs;
      }
      return out;
    },
    advance(ms: number) {
      t += ms;
    },
  };
}

/** A fixed sequence of "random" numbers in [0, 1), repeated. */
function sequence(values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length];
}

Deno.test("first minute of an outage: every delay is in [0.4 s, 0.8 s], so a returning hub is tried within 0.8 s", () => {
  for (const r of [0, 0.999_999, 0.5]) {
    const delays = schedule(() => r).run(200).filter(([age]) => age < 60_000);
    assert.ok(delays.length >= 60, `${delays.length} attempts in the first minute`);
    for (const [age, d] of delays) {
      assert.ok(d >= 400 && d <= 800, `delay ${d} ms at ${age} ms into the outage`);
    }
  }
  // Attempts that take time themselves (a slow refusal) do not stretch the gaps.
  for (const [age, d] of schedule(() => 0.999_999).run(40, 300)) {
    if (age < 60_000) assert.ok(d <= 800, `delay ${d} ms at ${age} ms`);
  }
});

Deno.test("the delays are jittered: a fleet that lost the hub at once spreads its attempts", () => {
  const firsts = new Set<number>();
  const random = sequence([0.03, 0.91, 0.47, 0.66, 0.12, 0.78, 0.35, 0.59]);
  for (let edge = 0; edge < 8; edge++) firsts.add(schedule(random).run(1)[0][1]);
  assert.equal(firsts.size, 8, `first delays ${[...firsts].join(", ")}`);
  assert.ok(Math.min(...firsts) < 450 && Math.max(...firsts) > 750, [...firsts].join(", "));
  // Math.random itself: 50 draws cover most of the range.
  const draws = schedule(Math.random).run(50).map(([, d]) => d);
  assert.ok(Math.max(...draws) - Math.min(...draws) >= 200, draws.join(", "));
});

Deno.test("after the first minute the delays grow exponentially with full jitter above 1 s, up to 15 s", () => {
  // At the top of each range the caps are 2, 4, 8, 15, 15, … s.
  const slow = schedule(() => 0.999_999).run(100).filter(([age]) => age >= 60_000).map(([, d]) => d);
  assert.deepEqual(slow.slice(0, 6), [2_000, 4_000, 8_000, 15_000, 15_000, 15_000]);
  assert.ok(slow.every((d) => d <= 15_000));
  // At the bottom they stay at the 1 s floor: full jitter, not a fixed step.
  const low = schedule(() => 0).run(200).filter(([age]) => age >= 60_000).map(([, d]) => d);
  assert.ok(low.length > 0 && low.every((d) => d === 1_000), low.join(", "));
  // In between, each draw lies within its range.
  const mid = schedule(() => 0.5).run(200).filter(([age]) => age >= 60_000).map(([, d]) => d);
  assert.deepEqual(mid.slice(0, 5), [1_500, 2_500, 4_500, 8_000, 8_000]);
});

Deno.test("a long outage costs few attempts: one every 8 s on average after the first minute, not one a second", () => {
  const h = schedule(() => 0.5);
  const attempts = h.run(400).filter(([age]) => age < 3_600_000);
  // 60–120 in the first minute, then one every 8 s on average: about 530 in an hour, not 3,600+.
  assert.ok(attempts.length < 600, `${attempts.length} attempts in an hour`);
});

Deno.test("reset() ends the outage: the next failure is fast again and the clock starts anew", () => {
  const h = schedule(() => 0.999_999);
  h.run(120);
  assert.ok(h.s.outageMs() > 60_000);
  assert.equal(h.s.next(), 15_000);
  h.s.reset();
  assert.equal(h.s.outageMs(), 0);
  h.advance(3_600_000);
  assert.equal(h.s.next(), 800);
  assert.equal(h.s.outageMs(), 0, "the new outage starts at its first delay");
  h.advance(59_000);
  assert.equal(h.s.next(), 800);
  h.advance(1_000);
  assert.equal(h.s.next(), 2_000, "a minute later it backs off again, from the first step");
});
