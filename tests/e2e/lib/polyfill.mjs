// Polyfills that let matrix-js-sdk 43 (which declares "engines": {"node": ">=22"})
// run on the Node 20 of the test machines. Import this module before anything
// that loads matrix-js-sdk (lib/officer.mjs does so as its very first import;
// ES module imports are evaluated in order, so that is enough).
//
// What the SDK needs beyond Node 20, found by grepping its lib/ folder:
//   - Promise.withResolvers (ES2024, Node 22): used throughout (sync, scheduler,
//     rust-crypto OutgoingRequestsManager, verification, ...). Polyfilled here.
// What it does NOT need polyfilled:
//   - Uint8Array.prototype.toBase64 / Uint8Array.fromBase64: the SDK feature-detects
//     them and falls back to btoa/atob (lib/base64.js).
//   - globalThis.crypto (WebCrypto), fetch, atob/btoa, structuredClone: present in Node 20.
//   - indexedDB / localStorage: the officer runs Rust crypto with an in-memory
//     store (initRustCrypto({ useIndexedDB: false })) and the default memory store.
// The engine warnings npm prints on install (matrix-js-sdk, content-type, p-retry
// want Node 22) are expected; nothing else they use is missing from Node 20.

if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    enumerable: false,
    // Spec: https://tc39.es/ecma262/#sec-promise.withResolvers. `this` is the
    // constructor, so subclasses get instances of themselves.
    value: function withResolvers() {
      let resolve;
      let reject;
      const promise = new this((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}

// ---------------------------------------------------------------------------
// Timers: let the process exit once every officer is stopped.
//
// matrix-js-sdk arms a plain setTimeout for the local timeout of nearly every
// HTTP request (lib/http-api/utils.js timeoutSignal(): 80 s for each sync
// long-poll, 60 s for each keys request, ...) and never clears it when the
// request finishes; its capability poller also re-arms a 6-hour refresh timer
// when an in-flight poll settles after stopClient(). In a browser that is
// harmless; in Node those timers keep the event loop alive for up to ~2 minutes
// after client.stopClient(), so a test file would hang that long before exiting.
//
// We therefore track the timers whose immediate caller is matrix-js-sdk code.
// While at least one officer is running (holdSdkTimers() called and not yet
// released) they behave normally. When the last one releases, the tracked
// timers are unref()'d (they still fire if the process stays up for another
// reason, but no longer keep it alive), and so is every SDK timer created while
// none is running. Other code's timers are never touched.

const SDK_PATH = '/node_modules/matrix-js-sdk/';
const tracked = new Set();
let holders = 0;

function calledFromSdk(wrapper) {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 1;
  const probe = {};
  Error.captureStackTrace(probe, wrapper); // first frame = the caller of setTimeout
  Error.stackTraceLimit = limit;
  return probe.stack.includes(SDK_PATH);
}

function wrapTimer(name, once) {
  const original = globalThis[name];
  const wrapper = function (callback, ...rest) {
    if (typeof callback !== 'function' || !calledFromSdk(wrapper)) return original.call(this, callback, ...rest);
    let handle;
    const fire = once
      ? function (...args) {
          tracked.delete(handle);
          return callback.apply(this, args);
        }
      : callback;
    handle = original.call(this, fire, ...rest);
    if (holders === 0) handle.unref?.();
    else tracked.add(handle);
    return handle;
  };
  // Keep util.promisify(setTimeout) and friends working.
  for (const key of Reflect.ownKeys(original)) {
    if (!(key in wrapper)) Object.defineProperty(wrapper, key, Object.getOwnPropertyDescriptor(original, key));
  }
  globalThis[name] = wrapper;
}

function wrapClear(name) {
  const original = globalThis[name];
  globalThis[name] = function (handle) {
    tracked.delete(handle);
    return original.call(this, handle);
  };
}

if (!globalThis.__sikkerchatSdkTimers) {
  globalThis.__sikkerchatSdkTimers = true;
  wrapTimer('setTimeout', true);
  wrapTimer('setInterval', false);
  wrapClear('clearTimeout');
  wrapClear('clearInterval');
}

/**
 * Marks a matrix-js-sdk client as running; returns the function to call once
 * it is stopped (idempotent). See the comment above.
 * @returns {() => void}
 */
export function holdSdkTimers() {
  holders += 1;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    holders -= 1;
    if (holders === 0) {
      for (const handle of tracked) handle.unref?.();
      tracked.clear();
    }
  };
}
