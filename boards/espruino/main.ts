/**
 * The bundle's entry: builds the Espruino board and starts the runtime. The runtime object is
 * left on `global.espfleet`, so a user at the console can inspect it (and the emulator can
 * account its memory).
 */
import { EspruinoBoard } from './espruino-board.js';
import { Runtime } from '../../firmware/runtime.js';

var board = new EspruinoBoard();
var runtime = new Runtime(board);
global.espfleet = runtime;
runtime.start();
runtime.run();
