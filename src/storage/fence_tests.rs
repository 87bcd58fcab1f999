//! The fence, checked the same way on every [`Storage`]: a writer with a
//! lower fence cannot overwrite a row a higher one has saved, and the rest
//! of its batch is still written.

use super::{DbId, Storage, StoredEntity};

/// `e` is an existing row; other rows are created here.
pub(crate) fn a_lower_fence_cannot_write_over_a_higher(db: &mut dyn Storage, e: DbId) {
    let other = db.create_entity("Avatar", 1, b"o").expect("entity");
    let row = |id: DbId, data: &[u8], fence: u64| StoredEntity {
        db_id: id,
        type_name: "Avatar".into(),
        format_version: 1,
        data: data.to_vec(),
        fence,
    };
    let data = |db: &mut dyn Storage, id| db.load_entity(id).expect("load").expect("row").data;
    // The old owner and the restored base share fence 4 at first: both write.
    assert_eq!(
        db.save_entities(&[row(e, b"old owner", 4)]).expect("save"),
        0
    );
    assert_eq!(
        db.save_entities(&[row(e, b"restored", 5)]).expect("save"),
        0
    );
    assert_eq!(db.load_entity(e).expect("load").expect("row").fence, 5);
    // The old owner lives on and saves again: refused, the rest written.
    let refused = db.save_entities(&[row(e, b"old owner again", 4), row(other, b"o2", 0)]);
    assert_eq!(refused.expect("save"), 1);
    assert_eq!(data(db, e), b"restored");
    assert_eq!(data(db, other), b"o2");
    // The new owner goes on saving, and whoever loads the row next keeps
    // its fence.
    assert_eq!(
        db.save_entities(&[row(e, b"restored later", 5)])
            .expect("save"),
        0
    );
    assert_eq!(data(db, e), b"restored later");
}
