// The order workflow's intake function (examples/order-workflow/functions/intake), without AWS:
// `node --test examples/tests/test_intake.mjs` (run by tests/tests/example_apps.rs).
import assert from "node:assert/strict";
import { test } from "node:test";

import { executionName, handle } from "../order-workflow/functions/intake/index.mjs";

test("execution names keep to the characters Step Functions allows", () => {
  assert.equal(executionName("o-1"), "order-o-1");
  assert.equal(executionName("a b/c:d"), "order-a_b_c_d");
  assert.equal(executionName("x".repeat(200)).length, 78);
});

test("each order starts one execution; a message that is not JSON goes back to the queue", async () => {
  const started = [];
  const result = await handle(
    {
      Records: [
        { messageId: "m1", body: JSON.stringify({ order_id: "o-1", lines: [] }) },
        { messageId: "m2", body: "not json" },
        { messageId: "m3", body: JSON.stringify({ lines: [] }) },
      ],
    },
    async (execution) => started.push(execution),
  );
  assert.deepEqual(result, { batchItemFailures: [{ itemIdentifier: "m2" }] });
  assert.deepEqual(
    started.map((s) => s.name),
    ["order-o-1", "order-m3"],
  );
  assert.equal(started[0].input, JSON.stringify({ order_id: "o-1", lines: [] }));
});

test("a failed start returns the message to the queue", async () => {
  const result = await handle(
    { Records: [{ messageId: "m1", body: "{}" }] },
    async () => {
      throw new Error("throttled");
    },
  );
  assert.deepEqual(result, { batchItemFailures: [{ itemIdentifier: "m1" }] });
});
