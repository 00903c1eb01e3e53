//! The connector (issue 4). Not built yet.
