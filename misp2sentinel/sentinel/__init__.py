"""Microsoft Sentinel upload: MSAL tokens (`auth`), request pacing (`pacing`) and the upload client (`client`)."""
