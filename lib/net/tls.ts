// The TLS certificate and key named by TLS_CERT_FILE and TLS_KEY_FILE, read and checked once at
// start-up so that a bad one stops the server with one clear line. Imports nothing from lib/.

export interface TlsFiles {
  /** PEM certificate chain. */
  readonly cert: string;
  /** PEM private key. */
  readonly key: string;
}

/** A certificate or key that cannot be used: the message names the file and what is wrong. */
export class TlsError extends Error {
  override readonly name = "TlsError";
}

/** Reads both PEM files; throws TlsError naming the file when one is missing or is not PEM. */
export function readTlsFiles(certFile: string, keyFile: string): TlsFiles {
  const cert = readPem(certFile, "TLS_CERT_FILE", /-----BEGIN CERTIFICATE-----/);
  const key = readPem(keyFile, "TLS_KEY_FILE", /-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----/);
  if (key.includes("ENCRYPTED PRIVATE KEY")) {
    throw new TlsError(`TLS_KEY_FILE ${keyFile}: the key is encrypted; give an unencrypted PEM key`);
  }
  return { cert, key };
}

function readPem(path: string, variable: string, header: RegExp): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "no such file" : err instanceof Error ? err.message : String(err);
    throw new TlsError(`${variable} ${path}: cannot read it (${why})`);
  }
  if (!header.test(text)) throw new TlsError(`${variable} ${path}: not a PEM file of the expected kind`);
  return text;
}

/** Wraps an error from listening with the certificate (a key that does not match, say) in a TlsError. */
export function tlsListenError(err: unknown): TlsError {
  const why = err instanceof Error ? err.message : String(err);
  return new TlsError(`TLS_CERT_FILE/TLS_KEY_FILE: the certificate or key cannot be used (${why})`);
}
