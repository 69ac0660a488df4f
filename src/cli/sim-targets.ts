// The simulated radar scene of one node: a receiver, a transmitter and K aircraft
// flying straight at constant speed. Each frame holds every target's bistatic
// delay and doppler (with measurement noise, and a detection now and then
// missed), some false-alarm clutter and optionally the targets' ADS-B truth.
// Pure: no clock, no I/O; frame k depends only on the seed, the node and k.
//
// Units as retina nodes report them: delay is the bistatic range excess in km,
// doppler in Hz with f_d = -(1/λ)·dR/dt, so a target's delay drifts at
// -doppler·λ/1000 km/s (the reference tracker's `doppler_to_delay_rate`).
import { gaussian, mulberry32, poisson, type Random } from '../util/prng.js';

/** 200 MHz illuminator: λ = 1.5 m. */
export const WAVELENGTH_M = 1.5;
/** Measurement noise (1 sigma): 20 m of bistatic range, 0.3 Hz, 1 dB. */
export const DELAY_NOISE_KM = 0.02;
export const DOPPLER_NOISE_HZ = 0.3;
export const SNR_NOISE_DB = 1;
/** A target flying further than this from the receiver is replaced by a new one. */
export const MAX_RANGE_M = 120_000;
/** Clutter is spread over this delay/doppler window. */
export const CLUTTER_MAX_DELAY_KM = 150;
export const CLUTTER_MAX_DOPPLER_HZ = 300;

export interface SceneOptions {
  /** Aircraft in view at any time. */
  targets: number;
  /** Frames per second (the time step between frames is 1/rateHz). */
  rateHz: number;
  seed: number;
  /** 0-based: each node sees its own scene. */
  nodeIndex: number;
  /** Mean false alarms per frame (Poisson). */
  clutterPerFrame: number;
  /** Attach each target detection's ADS-B report (clutter gets null). */
  adsb: boolean;
  /** Chance that a target is detected in a frame (default 0.95). */
  detectionProbability?: number;
}

/** An ADS-B report as retina nodes attach it: feet, knots, degrees. */
export interface AdsbTruth {
  hex: string;
  lat: number;
  lon: number;
  alt_baro: number;
  gs: number;
  track: number;
}

type Vec3 = [number, number, number];

export interface SimTarget {
  /** ICAO address, 6 lower-case hex digits. */
  hex: string;
  /** Position (m, east/north/up from the receiver) at time `born`. */
  p0: Vec3;
  /** Velocity, m/s (level flight). */
  v: Vec3;
  /** Scene time (s) the target appeared. */
  born: number;
}

export interface SimFrame {
  /** Frame number from 0; its time is index/rateHz seconds after the first. */
  index: number;
  /** ms after the first frame (what the caller adds to its start timestamp). */
  offsetMs: number;
  delay: number[];
  doppler: number[];
  snr: number[];
  /** Same length as delay: the target's report, null for clutter (or every entry null without `adsb`). */
  adsb: (AdsbTruth | null)[];
  targetDetections: number;
  clutterDetections: number;
}

const round = (x: number, digits: number): number => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

const norm = (a: Vec3): number => Math.hypot(a[0], a[1], a[2]);

/** Mixes the node index into the seed so nodes differ but stay reproducible. */
function nodeSeed(seed: number, nodeIndex: number): number {
  return (seed ^ Math.imul(nodeIndex + 1, 0x9e3779b9)) >>> 0;
}

export class Scene {
  readonly targets: SimTarget[] = [];
  /** Transmitter position (m, from the receiver). */
  readonly tx: Vec3;
  /** Receiver latitude/longitude (degrees) for the ADS-B reports. */
  readonly rxLat: number;
  readonly rxLon: number;
  private readonly rand: Random;
  private readonly pd: number;
  private next = 0;

  constructor(readonly opts: SceneOptions) {
    this.rand = mulberry32(nodeSeed(opts.seed, opts.nodeIndex));
    this.pd = opts.detectionProbability ?? 0.95;
    const bearing = this.rand() * 2 * Math.PI;
    const baseline = 20_000 + this.rand() * 30_000;
    this.tx = [baseline * Math.sin(bearing), baseline * Math.cos(bearing), 300];
    this.rxLat = round(45 + this.rand() * 10, 4);
    this.rxLon = round(-5 + this.rand() * 20, 4);
    for (let i = 0; i < opts.targets; i++) this.targets.push(this.spawn(0));
  }

  /** Position (m) of a target at scene time t (s). */
  position(target: SimTarget, t: number): Vec3 {
    const dt = t - target.born;
    return [target.p0[0] + target.v[0] * dt, target.p0[1] + target.v[1] * dt, target.p0[2] + target.v[2] * dt];
  }

  /** Noise-free bistatic delay (km) and doppler (Hz) of a target at time t. */
  truth(target: SimTarget, t: number): { delay: number; doppler: number; rxRange: number; txRange: number } {
    const p = this.position(target, t);
    const toTx: Vec3 = [p[0] - this.tx[0], p[1] - this.tx[1], p[2] - this.tx[2]];
    const rxRange = norm(p);
    const txRange = norm(toTx);
    const range = rxRange + txRange - norm(this.tx);
    // dR/dt: the velocity projected on the sum of the unit vectors from receiver and transmitter.
    let rate = 0;
    for (let k = 0; k < 3; k++) rate += target.v[k]! * (p[k]! / rxRange + toTx[k]! / txRange);
    return { delay: range / 1000, doppler: -rate / WAVELENGTH_M, rxRange, txRange };
  }

  /** The next frame (frame 0 first). */
  nextFrame(): SimFrame {
    const index = this.next++;
    const t = index / this.opts.rateHz;
    const dets: { delay: number; doppler: number; snr: number; adsb: AdsbTruth | null }[] = [];
    let targetDetections = 0;
    for (let i = 0; i < this.targets.length; i++) {
      let target = this.targets[i]!;
      const p = this.position(target, t);
      if (Math.hypot(p[0], p[1]) > MAX_RANGE_M) {
        target = this.spawn(t);
        this.targets[i] = target;
      }
      // Drawn for every target, detected or not, so one missed detection does not shift the rest of the run.
      const seen = this.rand() < this.pd;
      const nDelay = gaussian(this.rand);
      const nDoppler = gaussian(this.rand);
      const nSnr = gaussian(this.rand);
      if (!seen) continue;
      const tr = this.truth(target, t);
      // Bistatic radar equation: SNR falls with the product of the two ranges; 25 dB at 30 km x 30 km.
      const snr = 25 - 20 * Math.log10((tr.rxRange * tr.txRange) / 9e8) + nSnr * SNR_NOISE_DB;
      dets.push({
        delay: round(Math.max(0, tr.delay + nDelay * DELAY_NOISE_KM), 3),
        doppler: round(tr.doppler + nDoppler * DOPPLER_NOISE_HZ, 2),
        snr: round(Math.max(3, snr), 2),
        adsb: this.opts.adsb ? this.adsbOf(target, t) : null,
      });
      targetDetections++;
    }
    const clutter = poisson(this.rand, this.opts.clutterPerFrame);
    for (let c = 0; c < clutter; c++) {
      dets.push({
        delay: round(this.rand() * CLUTTER_MAX_DELAY_KM, 3),
        doppler: round((this.rand() * 2 - 1) * CLUTTER_MAX_DOPPLER_HZ, 2),
        snr: round(4 + this.rand() * 5, 2),
        adsb: null,
      });
    }
    // A radar reports detections in cell order, not grouped by what caused them.
    dets.sort((a, b) => a.delay - b.delay || a.doppler - b.doppler);
    return {
      index,
      offsetMs: Math.round((index * 1000) / this.opts.rateHz),
      delay: dets.map((d) => d.delay),
      doppler: dets.map((d) => d.doppler),
      snr: dets.map((d) => d.snr),
      adsb: dets.map((d) => d.adsb),
      targetDetections,
      clutterDetections: clutter,
    };
  }

  /** What the aircraft's transponder reports at time t. */
  adsbOf(target: SimTarget, t: number): AdsbTruth {
    const p = this.position(target, t);
    const lat = this.rxLat + p[1] / 111_320;
    const lon = this.rxLon + p[0] / (111_320 * Math.cos((this.rxLat * Math.PI) / 180));
    const track = ((Math.atan2(target.v[0], target.v[1]) * 180) / Math.PI + 360) % 360;
    return {
      hex: target.hex,
      lat: round(lat, 5),
      lon: round(lon, 5),
      alt_baro: Math.round(p[2] / 0.3048 / 25) * 25,
      gs: round(Math.hypot(target.v[0], target.v[1]) / 0.514444, 1),
      track: round(track, 1),
    };
  }

  /**
   * A new aircraft 10-80 km from the receiver, 1-11 km up, 80-260 m/s. Placed
   * away from the other targets in delay/doppler (a few tries) so that a
   * tracker starts with separable tracks.
   */
  private spawn(t: number): SimTarget {
    let best: SimTarget | null = null;
    for (let attempt = 0; attempt < 20; attempt++) {
      const bearing = this.rand() * 2 * Math.PI;
      const dist = 10_000 + this.rand() * 70_000;
      const heading = this.rand() * 2 * Math.PI;
      const speed = 80 + this.rand() * 180;
      const hex = Math.floor(this.rand() * 0x1000000).toString(16).padStart(6, '0');
      const candidate: SimTarget = {
        hex,
        p0: [dist * Math.sin(bearing), dist * Math.cos(bearing), 1000 + this.rand() * 10_000],
        v: [speed * Math.sin(heading), speed * Math.cos(heading), 0],
        born: t,
      };
      best = candidate;
      const c = this.truth(candidate, t);
      const clear = this.targets.every((o) => {
        const d = this.truth(o, t);
        return Math.abs(d.delay - c.delay) > 5 || Math.abs(d.doppler - c.doppler) > 30;
      });
      if (clear) break;
    }
    return best!;
  }
}
