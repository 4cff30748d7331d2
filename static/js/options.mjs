/* The composer's values as the protocol wants them (docs/protocol.md): pure functions, tested in
 * tests/js. */

// The model picker's value, "provider:model" or "provider" ("" for the default), as
// [provider, model], each null when not given.
export function splitTarget(value) {
  if (!value) return [null, null];
  const at = value.indexOf(":");
  const provider = at < 0 ? value : value.slice(0, at);
  const model = at < 0 ? "" : value.slice(at + 1);
  return [provider || null, model || null];
}

// The options of a chat.send from the settings fields' texts (already valid): empty number
// fields are left out, so the conversation's or the provider's defaults apply.
export function sendOptions({ temperature, maxTokens, system }) {
  const options = {};
  if (temperature !== "") options.temperature = Number(temperature);
  if (maxTokens !== "") options.max_tokens = Number.parseInt(maxTokens, 10);
  options.system = system;
  return options;
}
