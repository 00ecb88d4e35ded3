// "Report" on someone else's post, comment, message, story or profile: opens the report
// dialog (`views/report-dialog.jsx`, loaded when first opened).
import { useState } from "preact/hooks";
import { Lazy } from "./lazy.jsx";

/**
 * A "Report" button for someone else's post, comment, message, story or profile;
 * `onOpen(open)` tells when its dialog opens and closes.
 */
export function ReportButton({ targetType, targetId, what, onOpen }) {
  const [open, setOpenState] = useState(false);
  const setOpen = (now) => {
    setOpenState(now);
    onOpen?.(now);
  };
  return (
    <>
      <button type="button" class="quiet" aria-label={`Report ${what}`} onClick={() => setOpen(true)}>
        Report
      </button>
      {open && <Lazy screen="report" component="ReportDialog" targetType={targetType} targetId={targetId} what={what} onClose={() => setOpen(false)} />}
    </>
  );
}
