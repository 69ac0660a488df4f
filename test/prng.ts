/** mulberry32: a small seeded PRNG so randomised test failures can be replayed from the printed seed. */
export { mulberry32 } from '../src/util/prng.js';
