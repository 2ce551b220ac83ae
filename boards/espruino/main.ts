/**
 * The bundle's entry: builds the Espruino board, starts the runtime and, once a valid config is
 * in Storage, the device. The runtime is left on `global.espfleet` so a user at the console can
 * inspect it (and the emulator can account its memory).
 */
import { EspruinoBoard } from './espruino-board.js';
import { Runtime } from '../../firmware/runtime.js';
import { Device } from '../../firmware/device.js';

var board = new EspruinoBoard();
var runtime = new Runtime(board);
global.espfleet = runtime;

function boot(): void {
  try {
    var device = new Device(runtime, board.now());
    runtime.device = device;
    runtime.add(device);
  } catch (e) {
    // A bug must not become a boot loop: report it and stay reachable at the console.
    board.log('espfleet: device failed to start: ' + String(e));
    return;
  }
  runtime.run();
}

runtime.onConfig = boot;
if (runtime.start()) boot();
