// The official Vipps MobilePay SDK (@vippsmobilepay/sdk, pinned in package-lock.json) against capstate's
// emulator: create -> force approve -> capture 300 -> capture 200 -> cancel -> refund -> get, under node --test.
//
// The SDK is used as published: it builds https://apitest.vipps.no/... requests and sends them with the global
// fetch. Node's fetch is undici, and undici's global dispatcher decides where a request goes; the one installed
// here sends apitest.vipps.no to the emulator (VIPPS_EMULATOR_URL, e.g. http://127.0.0.1:8700/vipps) and
// refuses every other origin, so nothing reaches the internet. tests/test_vipps_sdk.py starts the emulator and
// sets the variables below.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Agent, setGlobalDispatcher } from "undici";
import { Client } from "@vippsmobilepay/sdk";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/test_vipps_sdk.py`);
  return value;
};

const target = new URL(env("VIPPS_EMULATOR_URL"));
const prefix = target.pathname.replace(/\/$/, "");
const seen = [];

class ToEmulator extends Agent {
  dispatch(opts, handler) {
    const origin = new URL(opts.origin);
    if (origin.host !== "apitest.vipps.no") {
      throw new Error(`refusing to send to ${origin.host}: only apitest.vipps.no is redirected`);
    }
    seen.push(`${opts.method} ${opts.path}`);
    return super.dispatch({ ...opts, origin: target.origin, path: prefix + opts.path }, handler);
  }
}
setGlobalDispatcher(new ToEmulator());

const msn = env("VIPPS_MSN");
const client = Client({
  merchantSerialNumber: msn,
  subscriptionKey: env("VIPPS_SUBSCRIPTION_KEY"),
  useTestMode: true,
  retryRequests: false,
  systemName: "capstate-tests",
});
const reference = env("VIPPS_REFERENCE");
const NOK = (value) => ({ currency: "NOK", value });

function ok(result, what) {
  assert.equal(result.ok, true, `${what} failed: ${JSON.stringify(result.error)}`);
  return result.data;
}

function aggregate(payment) {
  const a = payment.aggregate;
  return {
    authorized: a.authorizedAmount.value, captured: a.capturedAmount.value,
    cancelled: a.cancelledAmount.value, refunded: a.refundedAmount.value,
  };
}

test("the official SDK runs a whole capture flow against the emulator", async () => {
  const token = ok(await client.auth.getToken(env("VIPPS_CLIENT_ID"), env("VIPPS_CLIENT_SECRET")), "getToken");
  assert.equal(token.token_type, "Bearer");
  const bearer = token.access_token;

  const created = ok(await client.payment.create(bearer, {
    amount: NOK(1000), paymentMethod: { type: "WALLET" }, reference, userFlow: "WEB_REDIRECT",
    returnUrl: "https://example.com/return", paymentDescription: "capstate emulator",
  }), "create");
  assert.equal(created.reference, reference);
  assert.match(created.redirectUrl, /^https:\/\//);

  const before = ok(await client.payment.info(bearer, reference), "info before approval");
  assert.equal(before.state, "CREATED");
  assert.deepEqual(aggregate(before), { authorized: 0, captured: 0, cancelled: 0, refunded: 0 });

  ok(await client.payment.forceApprove(bearer, reference, { customer: { phoneNumber: "4791234567" } }),
     "forceApprove");

  const first = ok(await client.payment.capture(bearer, reference, { modificationAmount: NOK(300) }), "capture 300");
  assert.equal(first.state, "AUTHORIZED");
  assert.deepEqual(aggregate(first), { authorized: 1000, captured: 300, cancelled: 0, refunded: 0 });

  const second = ok(await client.payment.capture(bearer, reference, { modificationAmount: NOK(200) }), "capture 200");
  assert.deepEqual(aggregate(second), { authorized: 1000, captured: 500, cancelled: 0, refunded: 0 });

  const cancelled = ok(await client.payment.cancel(bearer, reference), "cancel");
  // "Cancelling a payment will always cancel the entire remaining not-captured amount" (operations/cancel.md),
  // and the state stays AUTHORIZED.
  assert.equal(cancelled.state, "AUTHORIZED");
  assert.deepEqual(aggregate(cancelled), { authorized: 1000, captured: 500, cancelled: 500, refunded: 0 });

  const refunded = ok(await client.payment.refund(bearer, reference, { modificationAmount: NOK(150) }), "refund");
  assert.deepEqual(aggregate(refunded), { authorized: 1000, captured: 500, cancelled: 500, refunded: 150 });

  const payment = ok(await client.payment.info(bearer, reference), "info");
  assert.equal(payment.reference, reference);
  assert.equal(payment.state, "AUTHORIZED");
  assert.deepEqual(payment.amount, NOK(1000));
  assert.deepEqual(aggregate(payment), { authorized: 1000, captured: 500, cancelled: 500, refunded: 150 });

  const events = ok(await client.payment.history(bearer, reference), "history");
  assert.deepEqual(events.map((e) => [e.name, e.amount.value, e.success]), [
    ["CREATED", 1000, true], ["AUTHORIZED", 1000, true], ["CAPTURED", 300, true], ["CAPTURED", 200, true],
    ["CANCELLED", 500, true], ["REFUNDED", 150, true],
  ]);
  // The SDK sends a fresh Idempotency-Key with every request; each operation is logged under its own.
  const keys = events.slice(2).map((e) => e.idempotencyKey);
  assert.equal(new Set(keys).size, 4);

  // A refusal comes back as Vipps's problem: capturing after the cancel.
  const refused = await client.payment.capture(bearer, reference, { modificationAmount: NOK(100) });
  assert.equal(refused.ok, false);
  assert.equal(refused.error.status, 400);
  assert.equal(refused.error.title, "Cannot capture a cancelled payment");
  assert.ok(refused.error.traceId);

  // And a wrong token is refused without touching the payment.
  const stranger = await client.payment.info("not-a-token", reference);
  assert.equal(stranger.ok, false);
  assert.equal(stranger.error.status, 401);

  assert.ok(seen.length >= 12, `every call went through the redirecting dispatcher (${seen.length})`);
  assert.ok(seen.every((line) => / \/(accesstoken|epayment)\//.test(line)), seen.join(", "));
});
