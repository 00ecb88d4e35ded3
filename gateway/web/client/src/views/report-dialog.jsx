// The report dialog (`ui/report.jsx` opens it): a reason and an optional note sent with
// `report`, and inline what happened (thanks, already reported, too many reports just now).
// Built apart from the app (ui/lazy.jsx), it keeps its document with it.
import { useState } from "preact/hooks";
import { mutate } from "../api.js";
import { Dialog, newId, useAction } from "../ui/common.jsx";

const REPORT = `mutation Report($input: ReportInput!) { report(input: $input) { id status } }`;

/** The API's `ReportReason`s, as people name them; the moderation view shows them too. */
export const REASONS = {
  SPAM: "Spam",
  HARASSMENT: "Harassment or bullying",
  HATE: "Hate",
  VIOLENCE: "Violence or threats",
  SEXUAL: "Sexual content",
  SELF_HARM: "Self-harm",
  OTHER: "Something else",
};

// The API's refusals, as the reporter should read them.
function refusal(error) {
  if (error.code === "BAD_USER_INPUT" && /already/i.test(error.message)) {
    return "You already reported this; a moderator will look at it.";
  }
  if (error.code === "RATE_LIMITED") return "You have sent many reports just now: try again later.";
  return error.message;
}

export function ReportDialog({ targetType, targetId, what, onClose }) {
  const [reason, setReason] = useState("SPAM");
  const [note, setNote] = useState("");
  const [done, setDone] = useState(false);
  const action = useAction();
  const [id] = useState(newId);
  const send = (event) =>
    action.run(event, async () => {
      await mutate(REPORT, { input: { targetType, targetId, reason, note: note.trim() || null } });
      setDone(true);
    });
  return (
    <Dialog class="card report" aria-labelledby={`${id}-t`} onClose={onClose}>
      <h2 id={`${id}-t`}>Report {what}</h2>
      {done ? (
        <p role="status">Thanks — a moderator will look at it.</p>
      ) : (
        <form onSubmit={send}>
          <div class="field">
            <label for={`${id}-r`}>Reason</label>
            <select id={`${id}-r`} value={reason} onChange={(event) => setReason(event.currentTarget.value)}>
              {Object.entries(REASONS).map(([value, label]) => (
                <option key={value} value={value}>
                  {label}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for={`${id}-n`}>Note (optional)</label>
            <textarea id={`${id}-n`} rows={3} maxLength={1000} value={note} onInput={(event) => setNote(event.currentTarget.value)} />
          </div>
          {action.error && (
            <p class="error" role="alert">
              {refusal(action.error)}
            </p>
          )}
          <button type="submit" class="primary" disabled={action.busy}>
            Send report
          </button>{" "}
        </form>
      )}
      <button type="button" onClick={onClose}>
        {done ? "Close" : "Cancel"}
      </button>
    </Dialog>
  );
}
