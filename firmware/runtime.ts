/**
 * The runtime shell: owns the board's single timer and feeds the cores. It holds no protocol
 * decisions: each part is a core with `tick(now)` and `deadline()`, and after every event the
 * shell re-arms the one board timer to the nearest deadline.
 *
 * Boot: read espfleet.json; a missing or invalid config is reported on the console with its
 * reason and re-read every CONFIG_RETRY_MS (a user may write it over the console), never a crash
 * or a boot loop. State that must survive a reboot (boot counter, breaker, counters) lives in
 * the Storage file STATE_FILE.
 */
import { Board } from './board.js';
import { CONFIG_FILE, DeviceConfig, parseConfig } from './config.js';

/** A part the shell drives: deadlines are absolute board milliseconds; -1 means none. */
export interface Part {
  tick(now: number): void;
  deadline(): number;
}

export var STATE_FILE = 'espfleet.state';
export var CONFIG_RETRY_MS = 5000; // re-read a missing config this often: cheap, and quick enough for a user at the console
export var PARTS_MAX = 8; // the shell's own list: every part costs a call per wake-up

export interface PersistentState {
  /** Boots since the state file was created; a beacon's seq space restarts per boot. */
  boots: number;
  [part: string]: unknown;
}

export class Runtime {
  board: Board;
  config: DeviceConfig | null;
  configError: string | null;
  state: PersistentState;
  /** The device once built (for the console: `espfleet.device.info()`). */
  device: Part | null;
  _parts: Part[];
  _wake: () => void;
  _armedAt: number;

  constructor(board: Board) {
    this.board = board;
    this.config = null;
    this.configError = null;
    this.state = { boots: 0 };
    this._parts = [];
    this.device = null;
    this._armedAt = -1;
    var self = this;
    // One closure for the life of the runtime: the timer callback.
    this._wake = function () {
      self._armedAt = -1;
      self.run();
    };
  }

  /** Boot: restore state, count the boot, read the config. Returns false while waiting for one. */
  start(): boolean {
    this.state = this._loadState();
    this.state.boots = (this.state.boots | 0) + 1;
    this.saveState();
    return this._readConfig();
  }

  _readConfig(): boolean {
    var r = parseConfig(this.board.storage.read(CONFIG_FILE));
    if (r.config === null) {
      if (r.error !== this.configError) this.board.log('espfleet: config: ' + r.error + '; waiting for a valid ' + CONFIG_FILE);
      this.configError = r.error;
      this.board.arm(CONFIG_RETRY_MS, this._wake);
      return false;
    }
    this.config = r.config;
    this.configError = null;
    return true;
  }

  add(part: Part): void {
    if (this._parts.length >= PARTS_MAX) throw new Error('runtime: more than ' + PARTS_MAX + ' parts');
    this._parts.push(part);
  }

  /** Runs every part whose deadline has come, then re-arms the timer to the nearest deadline. */
  run(): void {
    if (this.config === null) {
      if (!this._readConfig()) return;
      if (this.onConfig) {
        // The owner builds its parts and calls run() again.
        this.onConfig(this.config as unknown as DeviceConfig);
        return;
      }
    }
    var now = this.board.now();
    var parts = this._parts;
    for (var i = 0; i < parts.length; i++) {
      var d = parts[i].deadline();
      if (d >= 0 && d <= now) parts[i].tick(now);
    }
    this.schedule();
  }

  /** Re-arms the board timer to the nearest deadline. Call AFTER any event that may move one. */
  schedule(): void {
    var next = -1;
    var parts = this._parts;
    for (var i = 0; i < parts.length; i++) {
      var d = parts[i].deadline();
      if (d >= 0 && (next < 0 || d < next)) next = d;
    }
    if (next < 0) return;
    var now = this.board.now();
    this._armedAt = next;
    this.board.arm(next > now ? next - now : 0, this._wake);
  }

  /** Called once when a config first becomes valid after boot was waiting for one. */
  onConfig: ((config: DeviceConfig) => void) | null = null;

  saveState(): boolean {
    return this.board.storage.write(STATE_FILE, JSON.stringify(this.state));
  }

  _loadState(): PersistentState {
    var text = this.board.storage.read(STATE_FILE);
    if (text !== null) {
      try {
        var s = JSON.parse(text);
        if (typeof s === 'object' && s !== null && typeof s.boots === 'number') return s;
      } catch (e) {
        // A torn write: start counting again rather than refuse to boot.
      }
      this.board.log('espfleet: ' + STATE_FILE + ' unreadable, starting fresh');
    }
    return { boots: 0 };
  }
}
