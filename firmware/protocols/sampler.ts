/**
 * Samples the configured sensors on their schedules through the board. A read that fails (NaN)
 * or falls outside the sensor's [min, max] is a fault: counted and reported, never published.
 * Good values go to the sink (the edge pipeline).
 *
 * Schedules keep their phase (next = due + everyMs) so sampling does not drift; a sensor that
 * fell behind by more than one period (the board was busy or asleep) skips the missed samples
 * and counts them rather than firing a burst.
 */
import { Board } from '../board.js';
import { SensorConfig } from '../config.js';
import { SimulatedSource } from '../core/simulated-source.js';

export interface SampleSink {
  /** A good value of sensor i (index into the config's sensors). */
  sample(i: number, value: number, now: number): void;
  /** A failed or out-of-range read. */
  fault(i: number, reason: string, now: number): void;
}

export class Sampler {
  sensors: SensorConfig[];
  /** Per sensor: next due time, faults, missed samples, last good value. */
  due: number[];
  faults: number[];
  missed: number[];
  last: number[];
  _board: Board;
  _sink: SampleSink;
  _sim: (SimulatedSource | null)[];

  /** Sensors start at a random offset within their period (phase), so a fleet does not sample in step. */
  constructor(board: Board, sensors: SensorConfig[], sink: SampleSink, now: number, phase: () => number) {
    this._board = board;
    this._sink = sink;
    this.sensors = sensors;
    this.due = [];
    this.faults = [];
    this.missed = [];
    this.last = [];
    this._sim = [];
    for (var i = 0; i < sensors.length; i++) {
      var s = sensors[i];
      this.due.push(now + Math.floor(phase() * s.everyMs));
      this.faults.push(0);
      this.missed.push(0);
      this.last.push(NaN);
      this._sim.push(s.kind === 'simulated' ? new SimulatedSource(s.seed, s.unit) : null);
    }
  }

  /** Reads sensor i now (also the `read` RPC). NaN when the read fails. */
  read(i: number, now: number): number {
    var s = this.sensors[i];
    var v: number;
    if (s.kind === 'simulated') v = (this._sim[i] as SimulatedSource).read(now);
    else if (s.kind === 'temperature') v = this._board.temperature();
    else {
      v = this._board.analogRead(s.pin as string);
      if (s.scale) v = s.scale[0] + v * (s.scale[1] - s.scale[0]);
    }
    return v;
  }

  tick(now: number): void {
    for (var i = 0; i < this.sensors.length; i++) {
      if (this.due[i] > now) continue;
      var every = this.sensors[i].everyMs;
      var late = Math.floor((now - this.due[i]) / every);
      if (late > 0) this.missed[i] += late;
      this.due[i] += (late + 1) * every;
      this._one(i, now);
    }
  }

  _one(i: number, now: number): void {
    var v = this.read(i, now);
    var s = this.sensors[i];
    if (v !== v) {
      this.faults[i]++;
      this._sink.fault(i, 'read failed', now);
    } else if (v < s.min || v > s.max) {
      this.faults[i]++;
      this._sink.fault(i, 'out of range', now);
    } else {
      this.last[i] = v;
      this._sink.sample(i, v, now);
    }
  }

  deadline(): number {
    var d = -1;
    for (var i = 0; i < this.due.length; i++) if (d < 0 || this.due[i] < d) d = this.due[i];
    return d;
  }

  /** The index of a sensor by name, -1 if none. */
  index(name: string): number {
    for (var i = 0; i < this.sensors.length; i++) if (this.sensors[i].name === name) return i;
    return -1;
  }
}
