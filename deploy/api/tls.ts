/**
 * The deploy API's TLS material: the operator's certificate and key, or a
 * private CA and a serving certificate generated on first start and kept in
 * a folder (the state folder's tls/). Kubernetes clients send a bearer token
 * only over TLS, so kubectl needs this; the kubeconfig carries the CA.
 *
 * The CA is made once and kept; the serving certificate is made again when
 * it is missing, near its end, not signed by the kept CA, or does not name
 * an address the API is reached at. Private keys are written 0600.
 */
import { generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import forge from "node-forge";
import { UnavailableError, ValidationError } from "../../src/errors.ts";

export interface TlsMaterial {
  cert: string;
  key: string;
  /** The CA clients should trust (PEM), when known: generated, or the operator's caFile. */
  ca?: string;
  /** Where that CA is on disk. */
  caFile?: string;
}

export interface TlsSettings {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  caFile?: string | undefined;
}

const DAY_MS = 86_400_000;
const CA_DAYS = 3650;
const SERVING_DAYS = 365;
/** A serving certificate with less left than this is made again at start. */
const RENEW_BEFORE_DAYS = 30;

/** The operator's files when given, else the generated CA and serving certificate in `dir`. */
export function tlsMaterial(settings: TlsSettings, dir: string, listenHost: string): TlsMaterial {
  if (Boolean(settings.certFile) !== Boolean(settings.keyFile)) {
    const field = settings.certFile ? "api.tls.keyFile" : "api.tls.certFile";
    throw new ValidationError(
      `invalid configuration:\n  ${field}: api.tls.certFile and api.tls.keyFile go together; give both, or neither for a generated certificate`,
      [
        {
          field,
          message: "give api.tls.certFile and api.tls.keyFile together",
          reason: "FieldValueRequired",
        },
      ],
      { kind: "configuration" },
    );
  }
  if (settings.certFile && settings.keyFile) {
    const out: TlsMaterial = {
      cert: readPem(settings.certFile, "api.tls.certFile"),
      key: readPem(settings.keyFile, "api.tls.keyFile"),
    };
    if (settings.caFile) {
      out.ca = readPem(settings.caFile, "api.tls.caFile");
      out.caFile = settings.caFile;
    }
    return out;
  }
  return generatedTls(dir, servingNames(listenHost));
}

/** The names a serving certificate must carry: loopback, this host, and the listen address. */
export function servingNames(listenHost: string): string[] {
  const names = ["localhost", "127.0.0.1", "::1"];
  if (listenHost && listenHost !== "0.0.0.0" && listenHost !== "::") names.push(listenHost);
  else names.push(hostname());
  return [...new Set(names.map((n) => n.toLowerCase()))];
}

function generatedTls(dir: string, names: string[]): TlsMaterial {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caCertPath = join(dir, "ca.crt");
  const caKeyPath = join(dir, "ca.key");
  const certPath = join(dir, "api.crt");
  const keyPath = join(dir, "api.key");

  let ca: { cert: string; key: string };
  if (existsSync(caCertPath) && existsSync(caKeyPath)) {
    ca = { cert: readFileSync(caCertPath, "utf8"), key: readFileSync(caKeyPath, "utf8") };
  } else {
    ca = makeCa();
    writeFileSync(caKeyPath, ca.key, { mode: 0o600 });
    writeFileSync(caCertPath, ca.cert);
  }

  if (existsSync(certPath) && existsSync(keyPath)) {
    const cert = readFileSync(certPath, "utf8");
    if (stillGood(cert, ca.cert, names)) {
      return { cert, key: readFileSync(keyPath, "utf8"), ca: ca.cert, caFile: caCertPath };
    }
  }
  const serving = makeServing(ca, names);
  writeFileSync(keyPath, serving.key, { mode: 0o600 });
  writeFileSync(certPath, serving.cert);
  return { ...serving, ca: ca.cert, caFile: caCertPath };
}

function stillGood(certPem: string, caPem: string, names: string[]): boolean {
  try {
    const cert = new X509Certificate(certPem);
    if (!cert.checkIssued(new X509Certificate(caPem))) return false;
    if (Date.parse(cert.validTo) - Date.now() < RENEW_BEFORE_DAYS * DAY_MS) return false;
    return names.every((n) =>
      isIP(n) ? cert.checkIP(n) !== undefined : cert.checkHost(n) !== undefined,
    );
  } catch {
    return false;
  }
}

function makeCa(): { cert: string; key: string } {
  const { privateKey, publicKey } = rsaKeys();
  const cert = baseCert(publicKey, CA_DAYS);
  const subject = [{ name: "commonName", value: `skiff-ca-${Math.floor(Date.now() / 1000)}` }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(privateKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(privateKey) };
}

function makeServing(
  ca: { cert: string; key: string },
  names: string[],
): { cert: string; key: string } {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(ca.key);
  const { privateKey, publicKey } = rsaKeys();
  const cert = baseCert(publicKey, SERVING_DAYS);
  cert.setSubject([{ name: "commonName", value: "skiff-api" }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    {
      name: "subjectAltName",
      altNames: names.map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n })),
    },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(privateKey) };
}

function rsaKeys() {
  // Native key generation: forge's own takes seconds for 2048 bits.
  const pair = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
  });
  return {
    privateKey: forge.pki.privateKeyFromPem(pair.privateKey),
    publicKey: forge.pki.publicKeyFromPem(pair.publicKey),
  };
}

function baseCert(publicKey: forge.pki.PublicKey, days: number): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  // Positive (high bit clear), random: clients reject negative serials.
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f;
  cert.serialNumber = serial.toString("hex");
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 5 * 60_000);
  cert.validity.notAfter = new Date(now + days * DAY_MS);
  return cert;
}

function readPem(path: string, setting: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new UnavailableError(`${setting}: cannot read ${path}: ${(err as Error).message}`);
  }
}
