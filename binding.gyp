{
  # The addon is defined in native/binding.gyp. This file lets node-gyp (and prebuildify, and
  # `npm run build:native`) build it from the repository's top level into build/Release.
  # It is not in the npm package: npm gives any package with a binding.gyp at its root an implied
  # `node-gyp rebuild` install script (on a reinstall and on `npm ci`, "gypfile": false
  # notwithstanding), and the package must load its prebuilt binary instead of compiling.
  # In an installed package, `npx covpool-build` builds native/binding.gyp (scripts/build-from-source.js).
  "targets": [
    {
      "target_name": "covpool_from_top_level",
      "type": "none",
      "dependencies": ["native/binding.gyp:covpool"]
    }
  ]
}
