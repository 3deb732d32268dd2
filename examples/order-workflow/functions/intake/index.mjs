// The order workflow's entry: Lambda hands this function a batch of messages from the orders queue,
// and it starts one execution of the state machine per order. The execution is named after the
// order, so a message delivered twice starts one workflow (Step Functions refuses a second
// execution of the same name); a message that is not JSON goes back to the queue and, after five
// tries, to the dead-letter queue.
import { SFNClient, StartExecutionCommand } from "@aws-sdk/client-sfn";

const sfn = new SFNClient({});

/** An execution name from an order id: 1-80 of the characters Step Functions allows. */
export function executionName(orderId) {
  const safe = String(orderId).replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 72);
  return `order-${safe}`;
}

export async function handler(event) {
  const batchItemFailures = [];
  for (const record of event.Records ?? []) {
    try {
      const order = JSON.parse(record.body);
      await sfn
        .send(
          new StartExecutionCommand({
            stateMachineArn: process.env.STATE_MACHINE_ARN,
            name: executionName(order.order_id ?? record.messageId),
            input: JSON.stringify(order),
          }),
        )
        .catch((error) => {
          if (error.name !== "ExecutionAlreadyExists") throw error;
        });
    } catch (error) {
      console.error(`message ${record.messageId}: ${error.message}`);
      batchItemFailures.push({ itemIdentifier: record.messageId });
    }
  }
  return { batchItemFailures };
}
