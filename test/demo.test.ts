// The demo's text under its table is derived from the table's numbers (it once named svd, svd-topn
// and svd-pade as the methods with large gradient errors while its own table showed 1e-5 for them
// and 0.48 for ns and svd-newton).
import { DemoRow, summarize } from '../examples/demo';

const row = (method: string, gradErr: number, outputErr = 0, nonFinite = 0): DemoRow => ({ method, gradErr, outputErr, nonFinite });

describe('demo summary', () => {
  test('names the methods the numbers put in each group, with their ranges', () => {
    const text = summarize([
      row('ns', 4.78e-1, 4.37e-1),
      row('svd', 1.74e-5),
      row('svd-taylor', 2.03e-2),
      row('svd-pade', 1.74e-5),
      row('svd-pi', 6.59e-2),
      row('svd-newton', 4.78e-1),
      row('svd-lyap', 0),
      row('mpa-lya', 3.13e-1, 2.22e-1),
    ]);
    expect(text).toMatch(/Gradients within 1\.7e-5 of exact: svd, svd-pade \(svd-pade equals svd here/);
    expect(text).toMatch(/Biased by 2\.0e-2–6\.6e-2: svd-taylor, svd-pi/);
    expect(text).toMatch(/Off by 3\.1e-1–4\.8e-1: ns, svd-newton, mpa-lya/);
    expect(text).toMatch(/Forward: ns, mpa-lya approximate the square root \(output error 2\.2e-1–4\.4e-1\)/);
    expect(text).toMatch(/No method produced a non-finite gradient entry/);
    expect(text).not.toMatch(/svd-topn/);
  });

  test('follows the numbers when they change: a large svd error moves svd out of the close group', () => {
    const text = summarize([row('ns', 1e-4), row('svd', 0.9, 0, 3), row('svd-lyap', 0)]);
    expect(text).toMatch(/Gradients within 1\.0e-4 of exact: ns\./);
    expect(text).toMatch(/Off by 9\.0e-1: svd\./);
    expect(text).not.toMatch(/smoother function/); // svd's backward is not an iteration
    expect(text).toMatch(/Non-finite gradient entries: svd 3/);
  });
});
