#!/usr/bin/env node
// The independent verifier of syncer's tests: @sigstore/verify judges one Sigstore bundle.
//
//   node verify.js BUNDLE --key PUB.pem [--trusted-root ROOT.json] [--tlog-threshold N]
//   node verify.js BUNDLE --trusted-root ROOT.json --identity SAN --issuer URL
//
// With --key the bundle is key-signed (cosign sign --key): any hint names that key; the
// transparency-log threshold is 1 when a trusted root lists the log, else 0 (as cosign's
// --insecure-ignore-tlog). Keyless bundles need the certificate identity and OIDC issuer.
// Exit 0: verified; 1: rejected (the reason on stderr); 2: usage.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const EMPTY_ROOT = {
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [],
  certificateAuthorities: [],
  ctlogs: [],
  timestampAuthorities: [],
};

function parseArgs(argv) {
  const opts = { bundle: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      opts.bundle = arg;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) throw new Error(`${arg} needs a value`);
    opts[arg.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = value;
  }
  if (!opts.bundle) throw new Error('no bundle file given');
  if (!opts.key && !(opts.trustedRoot && opts.identity && opts.issuer)) {
    throw new Error('give --key, or --trusted-root with --identity and --issuer');
  }
  return opts;
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`usage: ${e.message}\n`);
    return 2;
  }
  try {
    const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(opts.bundle, 'utf8')));
    const rootJSON = opts.trustedRoot
      ? JSON.parse(fs.readFileSync(opts.trustedRoot, 'utf8'))
      : EMPTY_ROOT;
    const root = TrustedRoot.fromJSON(rootJSON);
    let material;
    let options;
    let policy;
    if (opts.key) {
      const publicKey = crypto.createPublicKey(fs.readFileSync(opts.key));
      material = toTrustMaterial(root, () => ({ publicKey, validFor: () => true }));
      const tlog = Number(opts.tlogThreshold ?? (root.tlogs.length > 0 ? 1 : 0));
      options = { tlogThreshold: tlog, ctlogThreshold: 0, timestampThreshold: tlog > 0 ? 1 : 0 };
    } else {
      material = toTrustMaterial(root);
      options = { tlogThreshold: 1, ctlogThreshold: 1, timestampThreshold: 1 };
      policy = { subjectAlternativeName: opts.identity, extensions: { issuer: opts.issuer } };
    }
    new Verifier(material, options).verify(toSignedEntity(bundle), policy);
  } catch (e) {
    process.stderr.write(`rejected: ${e.code ? e.code + ': ' : ''}${e.message}\n`);
    return 1;
  }
  process.stdout.write('verified\n');
  return 0;
}

process.exitCode = main();
