// A TensorFlow.js model with a GCP head (covpool/tfjs), trained for a few epochs on random data,
// then saved to JSON and loaded back. Needs @tensorflow/tfjs next to covpool:
//   npm install covpool @tensorflow/tfjs
//   node node_modules/covpool/examples/js/tfjs-model.js
const tf = require('@tensorflow/tfjs');
const { covPoolLayer, scheduleCallback, MethodSchedule } = require('covpool/tfjs');

async function main() {
  const [n, N, C, classes] = [64, 16, 8, 3];
  // Inputs [n, N, C]: N positions of C channels (channels last, what tfjs layers produce).
  const xs = tf.randomNormal([n, N, C], 0, 1, 'float32', 7);
  const ys = tf.tensor1d(Array.from({ length: n }, (_, i) => i % classes), 'float32');

  const gcp = covPoolLayer({ method: 'ns', iterations: 5, name: 'gcp' }); // dataFormat 'channelsLast' by default
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [N, C], units: C, activation: 'relu' }));
  model.add(gcp); // [n, N, C] -> [n, C(C+1)/2]
  model.add(tf.layers.dense({ units: classes, activation: 'softmax' }));
  model.compile({ optimizer: tf.train.adam(0.01), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy'] });

  const schedule = MethodSchedule.hybrid(3, 'ns', 'svd-pade'); // the paper's hybrid protocol, shortened
  const history = await model.fit(xs, ys, {
    epochs: 5,
    batchSize: 16,
    verbose: 0,
    callbacks: [scheduleCallback(gcp, schedule, (epoch, m) => console.log(`epoch ${epoch}: switched to ${m.method}`))],
  });
  console.log('loss per epoch:', history.history.loss.map((v) => Number(v).toFixed(4)).join(' '));
  console.log('GCP head stats:', gcp.op.stats);

  // The layer is registered for serialization: the model round-trips through JSON.
  const json = model.toJSON(null, false);
  const again = await tf.models.modelFromJSON(json);
  console.log('reloaded GCP layer config:', again.getLayer('gcp').getConfig().method);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
