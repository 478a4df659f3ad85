// Reads an MCAP file with @mcap/core (the TypeScript reader Foxglove is built on) and prints a JSON summary:
// schemas, channels, per-topic message counts, log time range, the first message of each topic (JSON parsed), and
// whether the file's foxglove.* JSON schemas have the property names and types of @foxglove/schemas.
// Usage: node mcap_check.cjs FILE.mcap   (NODE_PATH: a node_modules with @mcap/core, @foxglove/schemas, fzstd)
const fs = require("fs");
const { McapIndexedReader } = require("@mcap/core");
const fzstd = require("fzstd");
const foxglove = require("@foxglove/schemas/jsonschema");

function shape(schema) {
  const out = {};
  for (const [k, v] of Object.entries(schema.properties || {})) {
    out[k] = v.type || (v.oneOf ? "enum" : "?");
    if (v.properties) out[k] += ":" + Object.keys(v.properties).join(",");
  }
  return out;
}

async function main() {
  const buf = fs.readFileSync(process.argv[2]);
  const readable = {
    size: async () => BigInt(buf.length),
    read: async (offset, length) => buf.subarray(Number(offset), Number(offset + length)),
  };
  const reader = await McapIndexedReader.Initialize({
    readable,
    decompressHandlers: { zstd: (data, size) => fzstd.decompress(data, new Uint8Array(Number(size))) },
  });
  const schemas = {}, channels = {}, counts = {}, first = {}, foxgloveOk = {};
  for (const [id, s] of reader.schemasById) {
    const text = new TextDecoder().decode(s.data);
    schemas[s.name] = s.encoding;
    if (s.name.startsWith("foxglove.")) {
      const ref = foxglove[s.name.slice("foxglove.".length)];
      foxgloveOk[s.name] = !!ref && JSON.stringify(shape(JSON.parse(text))) === JSON.stringify(shape(ref));
    }
  }
  for (const [id, c] of reader.channelsById) {
    channels[c.topic] = { encoding: c.messageEncoding, schema: reader.schemasById.get(c.schemaId).name };
  }
  let minT = null, maxT = null;
  for await (const m of reader.readMessages()) {
    const topic = reader.channelsById.get(m.channelId).topic;
    counts[topic] = (counts[topic] || 0) + 1;
    if (!(topic in first)) first[topic] = JSON.parse(new TextDecoder().decode(m.data));
    if (minT === null || m.logTime < minT) minT = m.logTime;
    if (maxT === null || m.logTime > maxT) maxT = m.logTime;
  }
  const metadata = {};
  for await (const md of reader.readMetadata()) metadata[md.name] = Object.fromEntries(md.metadata);
  console.log(JSON.stringify({ schemas, channels, counts, first, foxgloveOk, metadata,
                               minLogTime: String(minT), maxLogTime: String(maxT) }));
}
main().catch((e) => { console.error(String(e)); process.exit(1); });
