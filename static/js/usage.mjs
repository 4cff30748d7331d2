/* An answer's usage line (tokens, time to answer, cost), written when its `message.done`
 * arrives; the server writes the same line into answers it renders (usage/selectors.py).
 * Costs follow usage/pricing.py: exact, then rounded half up to a hundredth of a cent. */

// Prices per 1M tokens as decimal strings ("0.15") -> integer hundredths of a cent (1500).
function priceUnits(text) {
  const [whole, fraction = ""] = String(text).split(".");
  return BigInt(whole || "0") * 10000n + BigInt((fraction + "0000").slice(0, 4));
}

// The cost of an answer's tokens, written as the server writes it ("$0.0123", "< $0.0001"),
// or "" when the model has no price.
export function costText(usage, price) {
  if (!price || !usage) return "";
  const exact =
    BigInt(usage.prompt_tokens || 0) * priceUnits(price[0]) +
    BigInt(usage.completion_tokens || 0) * priceUnits(price[1]);
  // `exact` is in hundredths of a cent per million tokens: round half up to hundredths of a cent.
  const units = (exact + 500000n) / 1000000n;
  if (exact > 0n && units === 0n) return "< $0.0001";
  const whole = (units / 10000n).toLocaleString("en-US");
  return `$${whole}.${String(units % 10000n).padStart(4, "0")}`;
}

export function durationText(milliseconds) {
  if (milliseconds == null) return "";
  const seconds = Math.max(milliseconds / 1000, 0);
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const rounded = Math.round(seconds);
  return `${Math.floor(rounded / 60)} min ${rounded % 60} s`;
}

// The whole line for a `message.done` frame, given the page's prices ({model: [in, out]}).
export function usageText(frame, prices) {
  const usage = frame.usage;
  const parts = [];
  if (usage) {
    parts.push(`${usage.prompt_tokens || 0} prompt + ${usage.completion_tokens || 0} answer tokens`);
  }
  const duration = durationText(frame.duration_ms);
  if (duration) parts.push(duration);
  const cost = usage ? costText(usage, (prices || {})[frame.model]) : "";
  if (cost) parts.push(cost);
  return parts.join(" · ");
}

let prices = null;

function pagePrices() {
  if (prices === null) {
    const chat = document.getElementById("chat");
    prices = chat && chat.dataset.prices ? JSON.parse(chat.dataset.prices) : {};
  }
  return prices;
}

export function showUsage(element, frame) {
  const slot = element.querySelector('[data-slot="usage"]');
  if (!slot) return;
  const text = usageText(frame, pagePrices());
  slot.textContent = text;
  slot.hidden = !text;
}
