/**
 * Keys that must never be taken from peer or config input: a later copy of the object could
 * reach a prototype through them. One definition for the config, the pipeline and RPC.
 */
export function isForbiddenKey(k: string): boolean {
  return k === '__proto__' || k === 'constructor' || k === 'prototype';
}
