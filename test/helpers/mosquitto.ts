/**
 * Starts and stops a real Mosquitto for tests and benchmarks: a free loopback port, a generated
 * config (listener, optional password file and ACL) in a temp dir, the broker as a child process.
 *
 * Mosquitto comes from the distribution's packages (`apt-get install mosquitto`; CI installs
 * it too). When it is missing, callers must say so loudly (warnMosquittoMissing) and skip,
 * never pass silently:
 *
 *   const HAVE = mosquittoAvailable();
 *   if (!HAVE) warnMosquittoMissing('bus external tests');
 *   it.skipIf(!HAVE)('...', async () => { const m = await startMosquitto({...}); ... });
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { accessSync, chmodSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CANDIDATES = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/local/bin/mosquitto', '/opt/homebrew/sbin/mosquitto'];

/** Path of the mosquitto binary (env MOSQUITTO_BIN first), or null when not installed. */
export function mosquittoBinary(): string | null {
  const list = process.env.MOSQUITTO_BIN ? [process.env.MOSQUITTO_BIN, ...CANDIDATES] : CANDIDATES;
  for (const p of list) {
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

export function mosquittoAvailable(): boolean {
  return mosquittoBinary() !== null;
}

/** The loud warning a test or bench prints before skipping because Mosquitto is absent. */
export function warnMosquittoMissing(what: string): string {
  const msg =
    `MOSQUITTO NOT INSTALLED: ${what} skipped. Install it (Debian/Ubuntu: apt-get install mosquitto) ` +
    `or set MOSQUITTO_BIN to the binary.`;
  console.warn('\n' + '!'.repeat(msg.length) + '\n' + msg + '\n' + '!'.repeat(msg.length) + '\n');
  return msg;
}

/**
 * One password_file line in Mosquitto 2's format: `user:$7$<iterations>$<salt b64>$<hash b64>`,
 * the hash being PBKDF2-HMAC-SHA512 (what mosquitto_passwd writes), so no extra tool is needed.
 */
export function mosquittoPasswordLine(user: string, password: string, iterations = 101): string {
  const salt = randomBytes(12);
  const hash = pbkdf2Sync(password, salt, iterations, 64, 'sha512');
  return `${user}:$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export interface MosquittoOptions {
  /** user -> password; written as password_file. */
  users?: Record<string, string>;
  /** acl_file contents (Mosquitto syntax). */
  acl?: string;
  /** Default: true when no users are given, false otherwise. */
  allowAnonymous?: boolean;
  /** Extra config lines. */
  extraConfig?: string[];
  /** How long to wait for the port to accept connections (default 5 s). */
  startTimeoutMs?: number;
  /** Listen on this port (a restart of the same broker); default a free one. */
  port?: number;
  /** Keep sessions and queued messages in this folder across restarts (persistence on). */
  persistDir?: string;
}

export interface RunningMosquitto {
  host: string;
  port: number;
  /** mqtt://127.0.0.1:<port> */
  url: string;
  dir: string;
  pid: number;
  /** Everything the broker logged (stderr). */
  log(): string;
  /** SIGTERM, wait for exit, remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = a !== null && typeof a === 'object' ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startMosquitto(opts: MosquittoOptions = {}): Promise<RunningMosquitto> {
  const bin = mosquittoBinary();
  if (bin === null) throw new Error('mosquitto is not installed');
  // A port found free can be taken before the broker binds it: retry a few times.
  let lastErr: unknown = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(bin, opts.port ?? (await freeLoopbackPort()), opts);
    } catch (err) {
      lastErr = err;
    }
  }
  throw lastErr;
}

async function startOnce(bin: string, port: number, opts: MosquittoOptions): Promise<RunningMosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'espfleet-mosquitto-'));
  // Started as root, Mosquitto switches to its own user unless told to stay: keep the current
  // user so it can read the generated files.
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const persist = opts.persistDir ? ['persistence true', `persistence_location ${opts.persistDir.endsWith('/') ? opts.persistDir : opts.persistDir + '/'}`, 'autosave_interval 1'] : ['persistence false'];
  const conf: string[] = [`listener ${port} 127.0.0.1`, ...persist, 'log_dest stderr', 'log_type all', 'max_queued_messages 100000'];
  if (asRoot) conf.push('user root');
  const users = opts.users ?? {};
  const haveUsers = Object.keys(users).length > 0;
  conf.push(`allow_anonymous ${opts.allowAnonymous ?? !haveUsers}`);
  if (haveUsers) {
    const file = join(dir, 'passwd');
    writeFileSync(file, Object.entries(users).map(([u, p]) => mosquittoPasswordLine(u, p)).join('\n') + '\n', { mode: 0o600 });
    conf.push(`password_file ${file}`);
  }
  if (opts.acl !== undefined) {
    const file = join(dir, 'acl');
    writeFileSync(file, opts.acl, { mode: 0o600 });
    conf.push(`acl_file ${file}`);
  }
  conf.push(...(opts.extraConfig ?? []));
  const confFile = join(dir, 'mosquitto.conf');
  writeFileSync(confFile, conf.join('\n') + '\n');
  chmodSync(dir, 0o700);

  let log = '';
  const child: ChildProcess = spawn(bin, ['-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  let exited = false;
  const exitedP = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));

  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exitedP;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (opts.startTimeoutMs ?? 5000);
  while (!(await canConnect(port))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`mosquitto did not start on port ${port}:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    host: '127.0.0.1',
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    pid: child.pid ?? -1,
    log: () => log,
    stop,
  };
}
