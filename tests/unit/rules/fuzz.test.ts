/**
 * Property: for 10,000 random documents (valid and broken) and random messages, the loader
 * always answers a Result and the engine always answers outputs; nothing throws, state stays JSON.
 */
import assert from "node:assert/strict";
import { createRuleEngine, parseRulesDocument } from "../../../src/rules/mod.ts";
import { Random, randomDocument, randomMessage } from "./_random.ts";

Deno.test("10,000 random documents and messages never crash the loader or the engine (seeded)", () => {
  const seed = 7_031_999;
  const r = new Random(seed);
  let valid = 0, invalid = 0, messages = 0, outputs = 0, errors = 0;
  for (let i = 0; i < 10_000; i++) {
    const document = randomDocument(r);
    const where = `seed ${seed} document ${i}: ${JSON.stringify(document)}`;
    let parsed;
    try {
      parsed = parseRulesDocument(document);
    } catch (error) {
      assert.fail(`loader threw ${error} on ${where}`);
    }
    if (!parsed.ok) {
      invalid++;
      assert.ok(parsed.issues.length > 0, where);
      for (const issue of parsed.issues) {
        assert.match(issue.path, /^(\/.*)?$/, where);
        assert.ok(issue.message.length > 0, where);
      }
      continue;
    }
    valid++;
    let engine = createRuleEngine(parsed.value);
    let now = 1_700_000_000_000 + r.int(100_000);
    for (let k = r.int(8); k > 0; k--) {
      now += r.int(90_000);
      const message = randomMessage(r, now - r.int(5_000));
      const before = JSON.stringify(message);
      try {
        const result = engine.process(message, now, { trace: r.chance(0.5) });
        assert.ok(Array.isArray(result.outputs) && Array.isArray(result.trace));
        outputs += result.outputs.length;
        errors += result.errors;
        for (const out of result.outputs) JSON.stringify(out);
        if (r.chance(0.3)) outputs += engine.tick(now + r.int(120_000)).length;
        const deadline = engine.nextDeadline();
        assert.ok(deadline === undefined || Number.isFinite(deadline));
        if (r.chance(0.2)) {
          engine = createRuleEngine(parsed.value, JSON.parse(JSON.stringify(engine.exportState())));
        }
      } catch (error) {
        assert.fail(`engine threw ${(error as Error).stack} on ${where} with ${before}`);
      }
      assert.equal(JSON.stringify(message), before, `the input message was changed: ${where}`);
      messages++;
    }
  }
  // The generator must exercise both paths to mean anything.
  assert.ok(valid > 3_000 && invalid > 1_000, `valid ${valid}, invalid ${invalid}`);
  assert.ok(messages > 10_000 && outputs > 5_000, `messages ${messages}, outputs ${outputs}`);
  console.log(
    `valid ${valid}, invalid ${invalid}, messages ${messages}, outputs ${outputs}, rule errors ${errors}`,
  );
});

Deno.test("tracing changes nothing but the trace: traced and untraced engines agree (seeded)", () => {
  const seed = 4242;
  const r = new Random(seed);
  let compared = 0;
  for (let i = 0; i < 3_000; i++) {
    const parsed = parseRulesDocument(randomDocument(r));
    if (!parsed.ok) continue;
    const traced = createRuleEngine(parsed.value);
    const fast = createRuleEngine(parsed.value);
    let now = 1_700_000_000_000;
    for (let k = 0; k < 12; k++) {
      now += r.int(40_000);
      const m = randomMessage(r, now);
      const a = traced.process(m, now);
      const b = fast.process(m, now, { trace: false });
      assert.deepStrictEqual(b.outputs, a.outputs, `seed ${seed} document ${i} message ${k}`);
      assert.equal(b.errors, a.errors);
      assert.deepStrictEqual(fast.tick(now), traced.tick(now));
      compared++;
    }
    assert.deepStrictEqual(fast.exportState(), traced.exportState());
  }
  assert.ok(compared > 10_000, `compared ${compared}`);
});
