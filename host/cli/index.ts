/** Entry of the command line: every command module registers itself, then main dispatches. */
export { main } from './main.js';
