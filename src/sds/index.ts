// `persistency/sds`: a durable local history for @waku/sds (CONTRACT.md section 11).
export {
  dropSdsChannel,
  HINTS_CATEGORY,
  HISTORY_CATEGORY,
  messageKey,
} from './layout.js';
export { type ILocalHistory, openSdsHistory, SdsLocalHistory } from './local-history.js';
