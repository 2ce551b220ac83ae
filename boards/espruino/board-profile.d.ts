/** Build-time constants of the board profile the bundle is built for (a virtual module of the build). */
declare module 'espfleet:board' {
  export var BOARD: string;
  export var FW: string;
  export var HAS_WIFI: boolean;
  export var HAS_CRYPTO: boolean;
  export var HAS_TELNET: boolean;
  export var VARS: number;
  export var LINUX: boolean;
}
