// The order workflow's entry: Lambda hands this function a batch of messages from the orders queue,
// and it starts one execution of the state machine per order. The execution is named after the
// order, so a message delivered twice starts one workflow (Step Functions refuses a second
// execution of the same name); a message that is not JSON goes back to the queue and, after five
// tries, to the dead-letter queue.
//
// The AWS SDK is part of Lambda's Node.js runtime; it is loaded on the first batch, so that the
// rest of this file can be tested without it (examples/tests/test_intake.mjs).
let sfn;
async function sdk() {
  if (!sfn) {
    const { SFNClient, StartExecutionCommand } = await import("@aws-sdk/client-sfn");
    sfn = { client: new SFNClient({}), StartExecutionCommand };
  }
  return sfn;
}

/** An execution name from an order id: 1-80 of the characters Step Functions allows. */
export function executionName(orderId) {
  const safe = String(orderId).replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 72);
  return `order-${safe}`;
}

/** Lambda's entry point. */
export async function handler(event) {
  return handle(event, startExecution);
}

/** Starts an execution for each order of the batch with `start`; the failed ones are returned. */
export async function handle(event, start) {
  const batchItemFailures = [];
  for (const record of event.Records ?? []) {
    try {
      const order = JSON.parse(record.body);
      await start({
        name: executionName(order.order_id ?? record.messageId),
        input: JSON.stringify(order),
      });
    } catch (error) {
      console.error(`message ${record.messageId}: ${error.message}`);
      batchItemFailures.push({ itemIdentifier: record.messageId });
    }
  }
  return { batchItemFailures };
}

/** Starts the state machine; a second start of the same order is not an error. */
async function startExecution({ name, input }) {
  const { client, StartExecutionCommand } = await sdk();
  await client
    .send(
      new StartExecutionCommand({
        stateMachineArn: process.env.STATE_MACHINE_ARN,
        name,
        input,
      }),
    )
    .catch((error) => {
      if (error.name !== "ExecutionAlreadyExists") throw error;
    });
}
