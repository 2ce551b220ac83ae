/**
 * Espruino's Storage over a folder: one file per name, written synchronously (as flash is), with
 * the board's size limit, 28-character names and flash semantics for writes at an offset (only
 * bytes still 0xFF can be written without erasing). A test can tear the next write to simulate
 * a power cut in the middle of it.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const NAME_LENGTH_MAX = 28;
/** Per-file overhead in flash: Espruino's header (name + length), 4-byte aligned. */
export const FILE_HEADER_BYTES = 32;

export class PowerCut extends Error {
  constructor(what: string) {
    super(`power cut during ${what}`);
  }
}

export interface TornWrite {
  /** Only the first `bytes` bytes of the next matching write reach the flash; then the power goes. */
  bytes: number;
  /** Only writes to this file name (any file if absent). */
  name?: string;
}

function encodeName(name: string): string {
  // Storage names are byte strings and may hold '/', chars < 32 (StorageFile chunks) or dots.
  return Buffer.from(name, 'latin1').toString('hex');
}

function decodeName(file: string): string {
  return Buffer.from(file, 'hex').toString('latin1');
}

export class EmuStorage {
  private readonly files = new Map<string, string>();
  tornWrite: TornWrite | null = null;
  /** Called when a torn write cuts the power: the board stops. */
  onPowerCut: (() => void) | null = null;
  writes = 0;

  constructor(
    readonly dir: string,
    readonly capacityBytes: number,
  ) {
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(dir)) {
      if (f.endsWith('.tmp')) continue;
      this.files.set(decodeName(f), readFileSync(join(dir, f)).toString('latin1'));
    }
  }

  private checkName(name: unknown): string {
    if (typeof name !== 'string' || name.length === 0) throw new Error('Storage: file name must be a non-empty string');
    if (name.length > NAME_LENGTH_MAX) throw new Error(`Storage: name '${name}' is longer than ${NAME_LENGTH_MAX} characters`);
    return name;
  }

  used(): number {
    let n = 0;
    for (const v of this.files.values()) n += FILE_HEADER_BYTES + Math.ceil(v.length / 4) * 4;
    return n;
  }

  getFree(): number {
    return Math.max(0, this.capacityBytes - this.used());
  }

  /**
   * Writes the file's new contents. `at` and `len` say which bytes this call wrote (the whole
   * file for a plain write): a torn write lands only the first `bytes` of those.
   */
  private persist(name: string, data: string, at = 0, len = data.length, before?: string): void {
    const file = join(this.dir, encodeName(name));
    const torn = this.tornWrite;
    if (torn && (torn.name === undefined || torn.name === name)) {
      this.tornWrite = null;
      const keep = Math.max(0, Math.min(torn.bytes, len));
      // A plain write erases then writes: the torn file is the landed prefix. An offset write
      // programs bytes in place over what was there before it (the old file, or the fresh
      // 0xFF-filled one when the call created it with a size): the rest stays as it was.
      const base = before ?? data;
      const part = before === undefined ? data.slice(0, keep) : base.slice(0, at) + data.substr(at, keep) + base.slice(at + keep);
      writeFileSync(file, Buffer.from(part, 'latin1'));
      this.files.set(name, part);
      this.onPowerCut?.();
      throw new PowerCut(`Storage.write('${name}')`);
    }
    writeFileSync(file + '.tmp', Buffer.from(data, 'latin1'));
    renameSync(file + '.tmp', file);
    this.files.set(name, data);
    this.writes++;
  }

  read(name: string, offset?: number, length?: number): string | undefined {
    const v = this.files.get(this.checkName(name));
    if (v === undefined) return undefined;
    if (offset === undefined) return v;
    return v.substr(offset, length ?? v.length - offset);
  }

  readJSON(name: string, noExceptions?: boolean): unknown {
    const v = this.read(name);
    if (v === undefined) return undefined;
    try {
      return JSON.parse(v);
    } catch (e) {
      if (noExceptions) return undefined;
      throw e;
    }
  }

  readArrayBuffer(name: string): ArrayBuffer | undefined {
    const v = this.read(name);
    if (v === undefined) return undefined;
    const b = Buffer.from(v, 'latin1');
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  }

  write(name: string, data: unknown, offset?: number, size?: number): boolean {
    this.checkName(name);
    const text = toByteString(data);
    const old = this.files.get(name);
    let next: string;
    if (offset === undefined) {
      next = text;
    } else {
      if (!Number.isInteger(offset) || offset < 0) throw new Error('Storage.write: offset must be a non-negative integer');
      let base: string;
      if (size !== undefined) {
        if (!Number.isInteger(size) || size < offset + text.length) throw new Error('Storage.write: size too small for the data at offset');
        base = '\xff'.repeat(size);
      } else {
        if (old === undefined) throw new Error(`Storage.write: '${name}' does not exist (give a size to create it)`);
        base = old;
      }
      if (offset + text.length > base.length) throw new Error(`Storage.write: past the end of '${name}' (${base.length} bytes)`);
      for (let i = 0; i < text.length; i++) {
        if (base.charCodeAt(offset + i) !== 0xff && base.charCodeAt(offset + i) !== text.charCodeAt(i)) {
          throw new Error(`Storage.write: '${name}' byte ${offset + i} already written (flash must be erased first)`);
        }
      }
      next = base.slice(0, offset) + text + base.slice(offset + text.length);
    }
    const grow = FILE_HEADER_BYTES + Math.ceil(next.length / 4) * 4 - (old === undefined ? 0 : FILE_HEADER_BYTES + Math.ceil(old.length / 4) * 4);
    if (grow > this.getFree()) {
      throw new Error(`Storage: not enough free space for '${name}' (${next.length} bytes, ${this.getFree()} free)`);
    }
    if (offset === undefined) this.persist(name, next);
    else this.persist(name, next, offset, text.length, size !== undefined ? '\xff'.repeat(size) : old);
    return true;
  }

  writeJSON(name: string, value: unknown): boolean {
    return this.write(name, JSON.stringify(value));
  }

  erase(name: string): void {
    this.checkName(name);
    if (!this.files.has(name)) return;
    this.files.delete(name);
    rmSync(join(this.dir, encodeName(name)), { force: true });
  }

  eraseAll(): void {
    for (const name of [...this.files.keys()]) this.erase(name);
  }

  list(match?: RegExp | string): string[] {
    const names = [...this.files.keys()].sort();
    if (match === undefined) return names;
    if (typeof match === 'string') return names.filter((n) => n.indexOf(match) >= 0);
    if (match && typeof (match as RegExp).test === 'function') return names.filter((n) => (match as RegExp).test(n));
    return names;
  }

  getStats(): { fileBytes: number; fileCount: number; freeBytes: number; trashBytes: number; trashCount: number } {
    return { fileBytes: this.used(), fileCount: this.files.size, freeBytes: this.getFree(), trashBytes: 0, trashCount: 0 };
  }

  compact(): void {
    // Files are rewritten whole here, so there is never trash to reclaim.
  }

  /** Host-side view for tests and tools. */
  snapshot(): Record<string, string> {
    return Object.fromEntries(this.files);
  }

  static exists(dir: string): boolean {
    return existsSync(dir);
  }
}

/** What Espruino stores for a value: Strings as they are, typed arrays as their bytes, anything else as its text. */
export function toByteString(data: unknown): string {
  if (typeof data === 'string') return data;
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1');
  if (data instanceof ArrayBuffer || Object.prototype.toString.call(data) === '[object ArrayBuffer]') {
    return Buffer.from(data as ArrayBuffer).toString('latin1');
  }
  return String(data);
}
