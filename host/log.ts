/**
 * Structured logs of the companion: one JSON object per line on stderr (time, level, event,
 * fields), so a log shipper or jq can read them. Quiet loggers drop info lines.
 */
import type { BusLog } from './bus/rejection-log.js';

export type Level = 'info' | 'warn' | 'error';

export interface Logger {
  log(level: Level, ev: string, fields?: Record<string, unknown>): void;
  info(ev: string, fields?: Record<string, unknown>): void;
  warn(ev: string, fields?: Record<string, unknown>): void;
  error(ev: string, fields?: Record<string, unknown>): void;
  /** The same logger in the bus's entry shape. */
  bus: BusLog;
  /** A logger whose lines carry `node` (cluster member) or another fixed field. */
  with(fields: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  /** Drop info lines (warnings and errors still go out). */
  quiet?: boolean;
  /** Where lines go (default stderr). */
  sink?: (line: string) => void;
  fields?: Record<string, unknown>;
}

export function createLogger(o: LoggerOptions = {}): Logger {
  const sink = o.sink ?? ((line: string) => process.stderr.write(line + '\n'));
  const base = o.fields ?? {};
  const log = (level: Level, ev: string, fields?: Record<string, unknown>): void => {
    if (level === 'info' && o.quiet) return;
    sink(JSON.stringify({ t: new Date().toISOString(), level, ev, ...base, ...fields }));
  };
  return {
    log,
    info: (ev, f) => log('info', ev, f),
    warn: (ev, f) => log('warn', ev, f),
    error: (ev, f) => log('error', ev, f),
    bus: (entry) => {
      const { level, ev, ...rest } = entry;
      log(level, ev, rest);
    },
    with: (fields) => createLogger({ ...o, fields: { ...base, ...fields } }),
  };
}

/** A logger that keeps lines in memory (tests). */
export function memoryLogger(): Logger & { lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const l = createLogger({ sink: (line) => lines.push(JSON.parse(line)) });
  return Object.assign(l, { lines });
}
