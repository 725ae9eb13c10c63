// covpool: differentiable global covariance pooling (GCP) meta-layers for Node.js.
export { Tensor } from './tensor';
export type { TensorLike, TensorInput, DType, FloatArray } from './tensor';
export { METHODS } from './methods';
export type {
  Device,
  Method,
  MethodOptions,
  MethodSpec,
  Normalization,
  NsOptions,
  SvdOptions,
  SvdTruncOptions,
  SvdTopNOptions,
  SvdTaylorOptions,
  SvdPadeOptions,
  SvdPiOptions,
  SvdNewtonOptions,
  MpaLyaOptions,
} from './methods';
export type { BackendInfo, BackwardOptions, ForwardResult, ResolvedOptions, Eigh, CallOptions, CovpoolOptions, DataFormat, MemoryStats } from './ops';
export {
  AbortError,
  BackwardState,
  covpool,
  covpoolSync,
  covpoolBackward,
  covpoolBackwardSync,
  triuvec,
  triuvecSync,
  triuvecBackward,
  triuvecBackwardSync,
  eigh,
  eighSync,
  sqrtm,
  sqrtmSync,
  sqrtmBackward,
  sqrtmBackwardSync,
  resolveOptions,
  backwardCoefficientsSync,
  padeCoefficients,
  backendInfo,
  memoryStats,
  emptyCache,
  triangleSize,
  maxBytes,
  setMaxBytes,
} from './ops';
export { CovPoolLayer, MethodSchedule } from './layer';
export type { LayerConfig, SchedulePhase } from './layer';
