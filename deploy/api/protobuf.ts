/**
 * The one protobuf body the API reads: a Namespace, which kubectl (client-go's
 * typed clients for built-in kinds) sends as `application/vnd.kubernetes.protobuf`
 * whatever the server's discovery says. Only the fields Skiff uses are read:
 *
 *   "k8s\0" + runtime.Unknown { 1: TypeMeta { 1: apiVersion, 2: kind }, 2: raw }
 *   raw = v1.Namespace { 1: ObjectMeta { 1: name, 2: generateName } }
 *
 * A reader of the wire format that is bounded by the body (every length is
 * checked against what is left) and refuses anything it cannot follow.
 */
import { BadRequestError } from "../../src/errors.ts";

export const PROTOBUF = "application/vnd.kubernetes.protobuf";
const MAGIC = [0x6b, 0x38, 0x73, 0x00]; // "k8s\0"

/** The Namespace of a protobuf body, as the JSON object it stands for (name fields only). */
export function namespaceFromProtobuf(body: Uint8Array): Record<string, unknown> {
  if (body.length < 4 || MAGIC.some((b, i) => body[i] !== b)) {
    throw invalid('it does not start with the "k8s\\0" envelope');
  }
  const unknown = fields(body.subarray(4));
  const typeMeta = fields(unknown.get(1) ?? new Uint8Array());
  const meta = fields(fields(unknown.get(2) ?? new Uint8Array()).get(1) ?? new Uint8Array());
  const text = (b: Uint8Array | undefined) =>
    b === undefined ? undefined : new TextDecoder("utf-8", { fatal: true }).decode(b);
  try {
    const metadata: Record<string, unknown> = {};
    const name = text(meta.get(1));
    const generateName = text(meta.get(2));
    if (name) metadata.name = name;
    if (generateName) metadata.generateName = generateName;
    return { apiVersion: text(typeMeta.get(1)), kind: text(typeMeta.get(2)), metadata };
  } catch {
    throw invalid("a string field is not UTF-8");
  }
}

/** The length-delimited fields of one message by number (last wins); other wire types skipped. */
function fields(buf: Uint8Array): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  let at = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (at >= buf.length) throw invalid("a number runs past the end");
      const byte = buf[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (!(byte & 0x80)) return value;
    }
    throw invalid("a number is too long");
  };
  while (at < buf.length) {
    const tag = varint();
    const wire = tag & 7;
    const field = Math.floor(tag / 8);
    if (wire === 0) varint();
    else if (wire === 1 || wire === 5) at += wire === 1 ? 8 : 4;
    else if (wire === 2) {
      const length = varint();
      if (length > buf.length - at) throw invalid("a field is longer than the body");
      out.set(field, buf.subarray(at, at + length));
      at += length;
    } else throw invalid(`wire type ${wire} is not supported`);
    if (at > buf.length) throw invalid("a field runs past the end");
  }
  return out;
}

function invalid(why: string): BadRequestError {
  return new BadRequestError(`the protobuf body is not a Namespace Skiff can read: ${why}`);
}
