/**
 * Many emulated boards in one process, sharing one clock. Each board runs the shipped bundle
 * file (dist/firmware/<board>.js, the bytes that are flashed) from its own Storage folder.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { BoardProfile, loadBoard, packageRoot } from '../profiles.js';
import { EmuClock } from './clock.js';
import { EmulatedBoard } from './board.js';

export interface EmulatorOptions {
  /** Virtual ms per real ms (default 1). */
  speed?: number;
  /** Folder holding one sub-folder per board; a temporary one (removed on close) if absent. */
  dataDir?: string;
  /** Folder of the built bundles (default dist/firmware of the package). */
  firmwareDir?: string;
  onLog?: (board: EmulatedBoard, line: string) => void;
}

export interface AddBoardOptions {
  id: string;
  board?: string;
  /** Device config written to Storage as espfleet.json (omit to keep what Storage has). */
  config?: object;
  /** Bundle text to flash instead of the built one (tests of the emulator itself). */
  bundle?: string;
  /** Boot right away (default true). */
  boot?: boolean;
}

export class Emulator {
  readonly clock: EmuClock;
  readonly dataDir: string;
  readonly boards = new Map<string, EmulatedBoard>();
  private readonly firmwareDir: string;
  private readonly ownsDir: boolean;
  private readonly bundles = new Map<string, string>();
  private readonly profiles = new Map<string, BoardProfile>();
  private readonly onLog?: (board: EmulatedBoard, line: string) => void;

  constructor(opts: EmulatorOptions = {}) {
    this.clock = new EmuClock({ speed: opts.speed ?? 1 });
    this.ownsDir = !opts.dataDir;
    this.dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'espfleet-emu-'));
    mkdirSync(this.dataDir, { recursive: true });
    this.firmwareDir = opts.firmwareDir ?? join(packageRoot(), 'dist', 'firmware');
    this.onLog = opts.onLog;
  }

  profile(name: string): BoardProfile {
    let p = this.profiles.get(name);
    if (!p) {
      p = loadBoard(name);
      this.profiles.set(name, p);
    }
    return p;
  }

  /** The shipped bundle for a board, read once per emulator. */
  bundle(board: string): string {
    let b = this.bundles.get(board);
    if (b === undefined) {
      const file = join(this.firmwareDir, `${board}.js`);
      if (!existsSync(file)) throw new Error(`no bundle ${file}: run \`npm run build\` first`);
      b = readFileSync(file, 'latin1');
      this.bundles.set(board, b);
    }
    return b;
  }

  add(opts: AddBoardOptions): EmulatedBoard {
    if (this.boards.has(opts.id)) throw new Error(`board id '${opts.id}' is already in use`);
    const profile = this.profile(opts.board ?? 'esp32');
    const board = new EmulatedBoard({ id: opts.id, profile, clock: this.clock, dir: join(this.dataDir, opts.id), onLog: this.onLog });
    this.boards.set(opts.id, board);
    const code = opts.bundle ?? this.bundle(profile.name);
    board.flash(code, opts.config);
    if (opts.boot !== false) board.boot();
    return board;
  }

  get(id: string): EmulatedBoard {
    const b = this.boards.get(id);
    if (!b) throw new Error(`no board '${id}'`);
    return b;
  }

  /** Powers every board off; removes the data folder if the emulator made it. */
  close(): void {
    for (const b of this.boards.values()) b.powerOff();
    this.boards.clear();
    if (this.ownsDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
