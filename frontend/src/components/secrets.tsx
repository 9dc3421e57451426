// What API keys and personal access tokens share: a secret shown once, and a revoke button
// that asks for confirmation.
import { useState } from "react";
import { ErrorText } from "./ui";

export function ShownOnce({ secret, testId, onDismiss }: { secret: string; testId: string; onDismiss: () => void }) {
  return (
    <div className="secret">
      <code data-testid={testId}>{secret}</code>
      <button type="button" onClick={() => void navigator.clipboard?.writeText(secret)}>
        Copy
      </button>
      <button type="button" onClick={onDismiss}>
        I have saved it
      </button>
    </div>
  );
}

export function RevokeCell({
  name,
  revoked,
  onRevoke,
  pending,
  error,
}: {
  name: string;
  revoked: boolean;
  onRevoke: () => void;
  pending: boolean;
  error: Error | null;
}) {
  const [confirming, setConfirming] = useState(false);
  return (
    <td className="row-actions">
      {!revoked &&
        (confirming ? (
          <>
            <button type="button" className="danger" onClick={onRevoke} disabled={pending}>
              Confirm: revoke {name}
            </button>
            <button type="button" onClick={() => setConfirming(false)}>
              Keep it
            </button>
          </>
        ) : (
          <button type="button" onClick={() => setConfirming(true)}>
            Revoke
          </button>
        ))}
      <ErrorText error={error} />
    </td>
  );
}
