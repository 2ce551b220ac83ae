/**
 * The espfleet command as a user runs it (the built package bin): every command answers --help,
 * and unknown flags, bad values and missing arguments exit 2 with a one-line reason.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../boards/profiles.js';

const root = packageRoot();
const bin = join(root, 'bin', 'espfleet.js');
const built = existsSync(join(root, 'dist', 'node', 'host', 'cli', 'index.js'));
const cwd = mkdtempSync(join(tmpdir(), 'espfleet-cli-'));
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

function run(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', timeout: 30_000, env: { ...process.env, ESPFLEET_FLEET_KEY: '', ESPFLEET_TOKEN: '' } });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

describe.skipIf(!built)('espfleet command line', () => {
  it('lists its commands; a bare call or an unknown command exits 2', () => {
    const h = run('--help');
    expect(h.code).toBe(0);
    for (const c of ['build', 'emulate', 'host', 'devices', 'call']) expect(h.out).toContain(c);
    expect(run().code).toBe(2);
    const u = run('frobnicate');
    expect(u.code).toBe(2);
    expect(u.err.trim().split('\n')).toHaveLength(1);
    expect(u.err).toContain("unknown command 'frobnicate'");
  });

  it.each(['build', 'emulate', 'host', 'devices', 'call'])('%s --help prints its usage and flags', (cmd) => {
    const r = run(cmd, '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain(`usage: espfleet ${cmd}`);
    expect(r.out).toContain('--help');
  });

  it.each([
    [['build', '--board', 'nope'], "unknown board 'nope'"],
    [['build', '--bogus'], 'unknown flag --bogus'],
    [['emulate', '--count', 'x'], '--count must be an integer'],
    [['emulate', '--count', '0'], '--count must be at least 1'],
    [['emulate', '--count', '2', '--speed', '-1'], '--speed must be at least'],
    [['emulate', '--count', '2', '--board', 'zx81'], '--board must be one of'],
    [['emulate', '--count', '2'], 'no --fleet-key'],
    [['emulate', '--count', '2', '--fleet-key', 'xyz'], '--fleet-key must be hex'],
    [['host', '--mqtt-port', '70000'], '--mqtt-port must be at most 65535'],
    [['host', '--broker', 'http://x'], '--broker must be a mqtt or mqtts or tcp URL'],
    [['host', '--acks', 'some'], '--acks must be one of quorum, all'],
    [['host', '--peers', 'a=127.0.0.1:1'], 'cluster mode needs --raft-port'],
    [['host', '--peers', 'a=127.0.0.1:1', '--raft-port', '7001'], 'cluster mode needs --cluster-secret'],
    [['host', '--config', 'missing.json'], '--config'],
    [['call', 'dev-1'], 'missing <method>'],
    [['call', 'dev-1', 'read', '{not json'], 'params are not valid JSON'],
    [['call', 'dev 1', 'ping'], 'device id must be'],
    [['call', 'dev-1', 'ping', '--timeout', '5'], '--timeout must be at least 100'],
    [['devices', '--url', 'ftp://x'], '--url must be a http or https URL'],
  ])('%j exits 2: %s', (args, why) => {
    const r = run(...(args as string[]));
    expect(r.code, r.err).toBe(2);
    expect(r.err.trim().split('\n'), r.err).toHaveLength(1);
    expect(r.err).toContain(why);
  });

  it('a config file with an unknown key or a bad value is refused with the reason', () => {
    writeFileSync(join(cwd, 'bad-key.json'), JSON.stringify({ 'mqtt-prot': 1884 }));
    writeFileSync(join(cwd, 'bad-value.json'), JSON.stringify({ 'http-port': 'eighty' }));
    writeFileSync(join(cwd, 'not-json.json'), '{');
    expect(run('host', '--config', 'bad-key.json').err).toContain("unknown key 'mqtt-prot'");
    expect(run('host', '--config', 'bad-value.json').err).toContain("'http-port' has a bad value");
    const r = run('host', '--config', 'not-json.json');
    expect(r.code).toBe(2);
    expect(r.err).toContain('not valid JSON');
  });

  it('devices and call say clearly when no companion answers (exit 1)', () => {
    const d = run('devices', '--url', 'http://127.0.0.1:9');
    expect(d.code).toBe(1);
    expect(d.err).toContain('cannot reach the companion');
    const c = run('call', 'dev-1', 'ping', '--url', 'http://127.0.0.1:9', '--token', 'x'.repeat(20));
    expect(c.code).toBe(1);
    expect(c.err).toContain('cannot reach the companion');
  });
});
